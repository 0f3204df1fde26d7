/**
 * effect-tcp: libdill's TCP API as an Effect 4 service layer for Node.
 *
 * @since 0.1.0
 */

/**
 * Points in time for blocking calls (`now`, `after`, `immediate`, `never`).
 *
 * @since 0.1.0
 */
export * as Deadline from "./Deadline.ts"

/**
 * One tagged error per errno, and the per-operation unions.
 *
 * @since 0.1.0
 */
export * as TcpError from "./TcpError.ts"

/**
 * The storage pool sockets live in.
 *
 * @since 0.1.0
 */
export * as TcpStorage from "./TcpStorage.ts"

/**
 * Connected sockets: exact-length I/O, half-close, graceful close, abort.
 *
 * @since 0.1.0
 */
export * as TcpSocket from "./TcpSocket.ts"

/**
 * Outgoing connections.
 *
 * @since 0.1.0
 */
export * as TcpClient from "./TcpClient.ts"

/**
 * libdill's message protocols (crlf, suffix, prefix) over a socket.
 *
 * @since 0.1.0
 */
export * as TcpMessage from "./TcpMessage.ts"

/**
 * Listening sockets.
 *
 * @since 0.1.0
 */
export * as TcpListener from "./TcpListener.ts"

/**
 * Metrics for connections, bytes and the pool (off until `TcpMetrics.layer`).
 *
 * @since 0.1.0
 */
export * as TcpMetrics from "./TcpMetrics.ts"

/**
 * TLS: connect, listen and STARTTLS-style upgrades, with typed handshake
 * and certificate errors.
 *
 * @since 0.1.0
 */
export * as TcpTls from "./TcpTls.ts"

/**
 * Everything with defaults, in one layer.
 *
 * @since 0.1.0
 */
export * as TcpNode from "./TcpNode.ts"

/**
 * An in-memory client and scripted peers for testing applications: no
 * sockets, any error injected, deadlines on `TestClock`.
 *
 * @since 0.1.0
 */
export * as TcpTest from "./TcpTest.ts"

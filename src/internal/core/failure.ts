import * as TcpError from "../../TcpError.ts"

/**
 * What broke a connection: any error but `PeerClosed`, which is an outcome,
 * not a failure, and the TLS errors, which only a handshake reports.
 */
export type Failure = Exclude<TcpError.TcpError, TcpError.PeerClosed | TcpError.TlsError>

/**
 * A connection's failure as the call that meets it reports it: the same
 * errno, that call's syscall, and only the tags that call documents.
 */
export const reported = <T extends TcpError.Tag>(
  failure: Failure,
  syscall: string,
  tags: ReadonlySet<T>
): Extract<TcpError.TcpError, { readonly _tag: T }> | TcpError.SystemError =>
  TcpError.narrow(
    failure.syscall === syscall ? failure : TcpError.fromCode(asSeenBy(failure.errno, tags), syscall, failure.address),
    tags
  )

/**
 * EPIPE is how a write learns the peer is gone; a call that does not report
 * BrokenPipe (recv, close) sees the same fact as a reset connection, as
 * libdill's tcp_close does.
 */
const asSeenBy = (errno: string, tags: ReadonlySet<TcpError.Tag>): string =>
  errno === "EPIPE" && !tags.has("BrokenPipe") ? "ECONNRESET" : errno

/** What a direction needs to know of the connection it belongs to. */
export interface Host {
  /** `host:port` of the peer, for error messages, where known. */
  readonly address: string | undefined
  /** The failure the connection met, if any. */
  readonly failure: Failure | undefined
  /** Whether calls may still start: the connection is neither closing nor closed. */
  readonly open: boolean
}

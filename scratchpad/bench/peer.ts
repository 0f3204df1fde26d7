/**
 * The peer every client talks to: one plain `node:net` program, the same for
 * all three implementations, in its own process (so on a 2-core machine the
 * measured client and the peer run on different cores).
 *
 * Controlled over IPC by `run.ts`: `{ type: "open" }` opens a fresh set of
 * listeners on 127.0.0.1 (fresh ports per client run, so connects never meet
 * a TIME_WAIT tuple of an earlier run) and answers `{ type: "ports", ports }`;
 * `{ type: "close" }` closes them and destroys every connection they
 * accepted, then answers `{ type: "closed" }`.
 *
 * Started as `peer.ts [certFile keyFile]`: with a certificate and its key
 * (PEM files), every set also has TLS listeners (`node:tls`) for the echo
 * and source handlers.
 */
import * as Fs from "node:fs"
import * as Net from "node:net"
import * as Tls from "node:tls"
import { decodeLength, encodeLength, HEADER_BYTES, LINE_BYTES, lineBlock, type Ports } from "./common.ts"

const HOST = "127.0.0.1"
const CHUNK = Buffer.alloc(64 * 1024, 0x5a)
const LINES = lineBlock()
const LINE_WIRE_BYTES = LINE_BYTES + 2
const noop = () => {}

interface ListenerSet {
  readonly servers: Array<Net.Server>
  readonly sockets: Set<Net.Socket>
}

let current: ListenerSet | undefined

const track = (set: ListenerSet, socket: Net.Socket): void => {
  set.sockets.add(socket)
  socket.on("error", noop)
  socket.on("close", () => set.sockets.delete(socket))
}

/**
 * Collects the 8-byte length header from the first chunk(s); returns the
 * header's value and the bytes after it once complete.
 */
const headerReader = () => {
  const header = Buffer.alloc(HEADER_BYTES)
  let have = 0
  return (chunk: Buffer): { length: number; rest: Buffer } | undefined => {
    const take = Math.min(HEADER_BYTES - have, chunk.length)
    chunk.copy(header, have, 0, take)
    have += take
    if (have < HEADER_BYTES) return undefined
    return { length: decodeLength(header), rest: chunk.subarray(take) }
  }
}

/** Echo: every byte straight back. */
const echo = (socket: Net.Socket): void => {
  socket.on("data", (data) => socket.write(data))
}

/**
 * Sink: requests follow one another on a connection. Each is an 8-byte
 * length N; discard N bytes, then ack with an 8-byte count.
 */
const sink = (socket: Net.Socket): void => {
  let readHeader = headerReader()
  let expected = -1
  let received = 0
  const count = (n: number) => {
    received += n
    if (received < expected) return
    // The client sends nothing more before the ack, so there is no leftover.
    socket.write(encodeLength(received))
    expected = -1
    received = 0
    readHeader = headerReader()
  }
  socket.on("data", (data: Buffer) => {
    if (expected >= 0) return count(data.length)
    const header = readHeader(data)
    if (header === undefined) return
    expected = header.length
    count(header.rest.length)
  })
}

/**
 * Requests follow one another on a connection; each is an 8-byte count N of
 * units of `unitBytes`. Answers with N units taken from the start of `block`
 * and round it again, one block per write, honouring backpressure with
 * `drain`.
 */
const streamUnits = (socket: Net.Socket, block: Uint8Array, unitBytes: number): void => {
  const perBlock = Math.floor(block.length / unitBytes)
  let readHeader = headerReader()
  let left = 0
  const pump = (): void => {
    while (left > 0) {
      const n = Math.min(left, perBlock)
      left -= n
      if (!socket.write(n === perBlock ? block : block.subarray(0, n * unitBytes))) {
        socket.once("drain", pump)
        return
      }
    }
  }
  socket.on("data", (data: Buffer) => {
    if (left > 0) return
    const header = readHeader(data)
    if (header === undefined) return
    readHeader = headerReader()
    left = header.length
    pump()
  })
}

/** Source: each request is a length N; N bytes in 64 KiB chunks (one reused buffer). */
const source = (socket: Net.Socket): void => streamUnits(socket, CHUNK, 1)

/** Lines: each request is a count N; N CRLF-terminated lines, one block (66 KiB) per write. */
const lines = (socket: Net.Socket): void => streamUnits(socket, LINES, LINE_WIRE_BYTES)

/** Accept: read to EOF; Node ends our side when the client's FIN arrives (allowHalfOpen off). */
const accept = (socket: Net.Socket): void => {
  socket.resume()
}

/** Idle: hold the connection, send nothing. */
const idle = (_socket: Net.Socket): void => {}

const [certFile, keyFile] = process.argv.slice(2)
const tlsContext = certFile !== undefined && keyFile !== undefined
  ? { cert: Fs.readFileSync(certFile), key: Fs.readFileSync(keyFile) }
  : undefined

const listen = (set: ListenerSet, handler: (socket: Net.Socket) => void, tls = false): Promise<number> =>
  new Promise((resolve, reject) => {
    const onSocket = (socket: Net.Socket) => {
      track(set, socket)
      handler(socket)
    }
    const server = tls && tlsContext !== undefined
      ? Tls.createServer({ ...tlsContext, noDelay: true }, onSocket)
      : Net.createServer({ noDelay: true }, onSocket)
    // A client that gives up mid-handshake must not stop the peer.
    server.on("tlsClientError", noop)
    set.servers.push(server)
    server.once("error", reject)
    server.listen({ host: HOST, port: 0, backlog: 1024 }, () => {
      const address = server.address()
      if (address === null || typeof address === "string") return reject(new Error("no port"))
      resolve(address.port)
    })
  })

const open = async (): Promise<Ports> => {
  const set: ListenerSet = { servers: [], sockets: new Set() }
  current = set
  return {
    echo: await listen(set, echo),
    sink: await listen(set, sink),
    source: await listen(set, source),
    accept: await listen(set, accept),
    idle: await listen(set, idle),
    lines: await listen(set, lines),
    ...(tlsContext === undefined ? {} : {
      tlsEcho: await listen(set, echo, true),
      tlsSource: await listen(set, source, true)
    })
  }
}

const close = async (): Promise<void> => {
  const set = current
  current = undefined
  if (set === undefined) return
  for (const socket of set.sockets) socket.destroy()
  await Promise.all(set.servers.map((server) => new Promise<void>((resolve) => server.close(() => resolve()))))
}

const reply = (message: unknown): void => {
  process.send?.(message)
}

process.on("message", (message: unknown) => {
  const type = typeof message === "object" && message !== null ? Reflect.get(message, "type") : undefined
  if (type === "open") {
    open().then((ports) => reply({ type: "ports", ports }), (error: unknown) => reply({ type: "error", error: String(error) }))
  } else if (type === "close") {
    close().then(() => reply({ type: "closed" }), (error: unknown) => reply({ type: "error", error: String(error) }))
  }
})
// The orchestrator going away (even killed) ends the peer too.
process.on("disconnect", () => process.exit(0))
reply({ type: "ready" })

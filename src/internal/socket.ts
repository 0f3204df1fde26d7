import { Array as Arr, Effect } from "effect"
import * as Socket from "effect/socket/Socket"
import type * as TcpError from "../TcpError.ts"
import type { TcpSocket } from "../TcpSocket.ts"

const utf8 = new TextEncoder()

const bytes = (chunk: Uint8Array | string): Uint8Array => typeof chunk === "string" ? utf8.encode(chunk) : chunk

/** The read side of `effect/socket` over a TcpSocket: what has arrived, a close error 1000 at the FIN. */
export const socketReader = (self: TcpSocket): Socket.Reader<Uint8Array> => ({
  pull: self.recvSome(64 * 1024).pipe(
    Effect.map(Arr.of),
    Effect.mapError((cause: TcpError.RecvError) =>
      cause._tag === "PeerClosed"
        ? new Socket.SocketError({ reason: new Socket.SocketCloseError({ code: 1000 }) })
        : new Socket.SocketError({ reason: new Socket.SocketReadError({ cause }) })
    )
  ),
  upgrade: Socket.SocketUpgradeError.unsupported
})

const writeError = (cause: TcpError.SendError) =>
  new Socket.SocketError({ reason: new Socket.SocketWriteError({ cause }) })

/** The write side: sends with backpressure; a CloseEvent half-closes (code 1000) or aborts (above). */
export const socketWriter = (self: TcpSocket): Socket.Writer => ({
  write: (chunk) =>
    Socket.isCloseEvent(chunk)
      ? chunk.code > 1000 ? self.abort : Effect.mapError(self.done(), writeError)
      : Effect.mapError(self.send(bytes(chunk)), writeError),
  writeAll: (chunks) => Effect.mapError(self.sendv(chunks.map(bytes)), writeError)
})

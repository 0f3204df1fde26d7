/**
 * Adapters from a socket to Effect's own `Stream`, `Sink` and
 * `effect/socket` `Socket`.
 */
import { Array as Arr, Effect, Sink, Stream } from "effect"
import type { Scope } from "effect"
import * as Socket from "effect/socket/Socket"
import type * as TcpError from "../TcpError.ts"

/**
 * What the adapters use of a socket. Declared here rather than imported from
 * `TcpSocket.ts`, which imports this module: no cycle between the two.
 */
export interface ByteStream {
  recvSome(max: number): Effect.Effect<Uint8Array, TcpError.RecvError>
  send(bytes: Uint8Array): Effect.Effect<void, TcpError.SendError>
  sendv(chunks: ReadonlyArray<Uint8Array>): Effect.Effect<void, TcpError.SendError>
  done(): Effect.Effect<void, TcpError.SendError>
  readonly abort: Effect.Effect<void>
}

const utf8 = new TextEncoder()

const bytes = (chunk: Uint8Array | string): Uint8Array => typeof chunk === "string" ? utf8.encode(chunk) : chunk

const closeError = (code: number) => new Socket.SocketError({ reason: new Socket.SocketCloseError({ code }) })

const readError = (cause: TcpError.RecvError) =>
  cause._tag === "PeerClosed"
    ? closeError(1000)
    : new Socket.SocketError({ reason: new Socket.SocketReadError({ cause }) })

/**
 * The read side of `effect/socket` over a TcpSocket, for one acquisition of
 * the reader: what has arrived, a close error 1000 at the FIN, and 1006 once
 * the acquisition's scope has closed (NodeSocket's code for a torn-down
 * reader), for the pull waiting then and every pull after.
 *
 * `Socket.make`'s contract: closing the scope must fail a pull suspended in
 * another fiber (`toChannel` ends a run that way when its input fails). The
 * TcpSocket may outlive the scope (`toSocket`), so the scope does not close
 * it: each pull receives in a fiber of its own, which the scope's end
 * interrupts while it waits. An interrupted `recvSome` consumes nothing, so
 * a later reader of the same socket gets every byte.
 */
export const socketReader = (self: ByteStream): Effect.Effect<Socket.Reader<Uint8Array>, never, Scope.Scope> =>
  Effect.gen(function*() {
    let released = false
    const waiting = new Set<() => void>()
    yield* Effect.addFinalizer(() =>
      Effect.sync(() => {
        released = true
        for (const release of waiting) release()
        waiting.clear()
      })
    )
    const receive = self.recvSome(64 * 1024).pipe(Effect.map(Arr.of), Effect.mapError(readError))
    const pull = Effect.withFiber<Arr.NonEmptyReadonlyArray<Uint8Array>, Socket.SocketError>((caller) =>
      released ? Effect.fail(closeError(1006)) : Effect.callback((resume) => {
        // Forked and watched in one step: no interruption of the caller can
        // come in between and leave a receive running that nobody awaits.
        const receiving = Effect.runForkWith(caller.context)(receive)
        const finished = receiving.pollUnsafe()
        // Bytes already buffered: the receive finished without waiting.
        if (finished !== undefined) return resume(finished)
        const release = () => {
          resume(Effect.fail(closeError(1006)))
          receiving.interruptUnsafe()
        }
        waiting.add(release)
        receiving.addObserver((exit) => {
          waiting.delete(release)
          resume(exit)
        })
        return Effect.sync(() => {
          waiting.delete(release)
          receiving.interruptUnsafe()
        })
      })
    )
    return { pull, upgrade: Socket.SocketUpgradeError.unsupported }
  })

const writeError = (cause: TcpError.SendError) =>
  new Socket.SocketError({ reason: new Socket.SocketWriteError({ cause }) })

/** The write side: sends with backpressure; a CloseEvent half-closes (code 1000) or aborts (above). */
export const socketWriter = (self: ByteStream): Socket.Writer => ({
  write: (chunk) =>
    Socket.isCloseEvent(chunk)
      ? chunk.code > 1000 ? self.abort : Effect.mapError(self.done(), writeError)
      : Effect.mapError(self.send(bytes(chunk)), writeError),
  writeAll: (chunks) => Effect.mapError(self.sendv(chunks.map(bytes)), writeError)
})

/** `TcpSocket.stream`: chunks of up to `chunkSize` bytes (64 KiB by default), ending at the peer's FIN. */
export const stream = (
  self: ByteStream,
  options?: { readonly chunkSize?: number | undefined }
): Stream.Stream<Uint8Array, Exclude<TcpError.RecvError, TcpError.PeerClosed>> => {
  const chunkSize = options?.chunkSize ?? 64 * 1024
  return Stream.unfold(undefined, () =>
    self.recvSome(chunkSize).pipe(
      Effect.map((bytes) => [bytes, undefined] as const),
      Effect.catchTag("PeerClosed", () => Effect.succeed(undefined))
    ))
}

/** `TcpSocket.sink`: every chunk sent in order, each in the kernel before the next is taken. */
export const sink = (self: ByteStream): Sink.Sink<void, Uint8Array, never, TcpError.SendError> =>
  Sink.forEachArray((chunks) => self.sendv(chunks))

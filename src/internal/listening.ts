/**
 * Which network `TcpListener.listen` listens on. Unset (the default), the
 * kernel's, through Node; `TcpTest.layer` sets its in-memory network, so a
 * program's own servers and clients reach each other with no socket.
 */
import { Context } from "effect"
import type { Effect, Scope } from "effect"
import type { TcpAddress } from "./address.ts"
import type * as TcpError from "../TcpError.ts"
import type { ListenOptions, TcpListener } from "../TcpListener.ts"

/** A network to listen on, other than the kernel's. */
export interface Network {
  readonly listen: (
    address: TcpAddress,
    options: ListenOptions | undefined
  ) => Effect.Effect<TcpListener, TcpError.ListenError, Scope.Scope>
  readonly fromFd: (fd: number, options: ListenOptions | undefined) => Effect.Effect<TcpListener, TcpError.ListenError>
}

/** The network listeners open on: `undefined` for the kernel's. */
export const Listening = Context.Reference<Network | undefined>("effect-tcp/Listening", {
  defaultValue: () => undefined
})

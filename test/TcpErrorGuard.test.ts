/**
 * TcpError.isTcpError: true for an instance of every tag's class, however it
 * was made (constructor, `fromCode`, `fromUnknown`, a real failed call);
 * false for everything else, including objects and other errors that only
 * carry a matching `_tag`.
 */
import { assert, describe, it } from "@effect/vitest"
import { Cause, Data, Effect, Schema } from "effect"
import * as fc from "fast-check"
import { TcpClient, TcpError, TcpListener, TcpSocket } from "../src/index.ts"
import { checkFdLeaks, closedPort, TestTcp } from "./helpers.ts"

/** One instance per tag; typed by tag, so a new tag without an entry here does not compile. */
const instances: { readonly [T in TcpError.Tag]: Extract<TcpError.TcpError, { readonly _tag: T }> } = {
  ConnRefused: new TcpError.ConnRefused({ errno: "ECONNREFUSED", syscall: "connect", message: "refused" }),
  ConnReset: TcpError.fromCode("ECONNRESET", "recv") as TcpError.ConnReset,
  HostUnreach: TcpError.fromCode("EHOSTUNREACH", "connect") as TcpError.HostUnreach,
  NetUnreach: TcpError.fromCode("ENETUNREACH", "connect") as TcpError.NetUnreach,
  NetDown: TcpError.fromCode("ENETDOWN", "connect") as TcpError.NetDown,
  TimedOut: TcpError.timedOut("recv", "127.0.0.1:1"),
  InvalidArgument: TcpError.invalid("recv", "length must be an integer"),
  TooManyOpenFiles: TcpError.fromCode("EMFILE", "accept") as TcpError.TooManyOpenFiles,
  SystemFileLimit: TcpError.fromCode("ENFILE", "accept") as TcpError.SystemFileLimit,
  OutOfMemory: TcpError.outOfMemory("connect", "storage pool exhausted"),
  BrokenPipe: TcpError.fromCode("EPIPE", "send") as TcpError.BrokenPipe,
  PeerClosed: TcpError.peerClosed("recv", new Uint8Array([1, 2])),
  AddrInUse: TcpError.fromCode("EADDRINUSE", "listen") as TcpError.AddrInUse,
  AddrNotAvail: TcpError.fromCode("EADDRNOTAVAIL", "connect") as TcpError.AddrNotAvail,
  AccessDenied: TcpError.fromCode("EACCES", "listen") as TcpError.AccessDenied,
  Closed: TcpError.closed("send"),
  MessageTooLarge: TcpError.fromCode("EMSGSIZE", "recv") as TcpError.MessageTooLarge,
  TlsHandshakeFailed: TcpError.make({ tag: "TlsHandshakeFailed", syscall: "connect", reason: "ERR_SSL_WRONG_VERSION_NUMBER" }),
  CertificateRejected: TcpError.make({ tag: "CertificateRejected", syscall: "connect", reason: "CERT_HAS_EXPIRED" }),
  SystemError: TcpError.fromUnknown(new Error("boom"), "read") as TcpError.SystemError
}

/** Somebody else's error that happens to use one of our tags. */
class ForeignTimedOut extends Schema.TaggedError<ForeignTimedOut>()("TimedOut", {
  errno: Schema.String,
  syscall: Schema.String,
  message: Schema.String
}) {}
class DataConnRefused extends Data.TaggedError("ConnRefused")<{ readonly errno: string }> {}

describe("TcpError.isTcpError", () => {
  checkFdLeaks()

  for (const [tag, error] of Object.entries(instances)) {
    it(`true for a ${tag}`, () => {
      assert.strictEqual(error._tag, tag)
      assert.isTrue(TcpError.isTcpError(error))
    })
  }

  it.live("true for what a failed call fails with, and narrows the type", () =>
    Effect.gen(function*() {
      const port = yield* closedPort
      const error: unknown = yield* Effect.flip(Effect.scoped(TcpClient.connect(`127.0.0.1:${port}`)))
      assert.isTrue(TcpError.isTcpError(error))
      if (TcpError.isTcpError(error)) assert.strictEqual(error._tag, "ConnRefused")
      const invalid: unknown = yield* Effect.flip(Effect.scoped(TcpListener.listen("127.0.0.1:99999")))
      assert.isTrue(TcpError.isTcpError(invalid))
    }).pipe(Effect.provide(TestTcp)))

  it("false for other errors, even ones with a matching _tag", () => {
    const others: ReadonlyArray<unknown> = [
      new Error("ECONNREFUSED"),
      new RangeError("out of range"),
      Object.assign(new Error("connect ECONNREFUSED"), { code: "ECONNREFUSED", errno: -111, syscall: "connect" }),
      new Cause.NoSuchElementError(),
      new Cause.TimeoutError(),
      new ForeignTimedOut({ errno: "ETIMEDOUT", syscall: "recv", message: "deadline reached" }),
      new DataConnRefused({ errno: "ECONNREFUSED" })
    ]
    for (const other of others) assert.isFalse(TcpError.isTcpError(other), String(other))
  })

  it("false for plain objects shaped like an error, and for non-objects", () => {
    const values: ReadonlyArray<unknown> = [
      null,
      undefined,
      0,
      "TimedOut",
      Symbol.for("TimedOut"),
      true,
      7n,
      {},
      [],
      { _tag: "TimedOut" },
      { _tag: "ConnRefused", errno: "ECONNREFUSED", syscall: "connect", message: "refused" },
      { ...instances.TimedOut },
      Object.assign(Object.create(null), { _tag: "Closed" }),
      { _tag: "toString" },
      { _tag: "__proto__" },
      { _tag: "constructor" },
      TcpError.TimedOut,
      TcpError.isTcpError,
      [instances.TimedOut]
    ]
    values.forEach((value, i) => assert.isFalse(TcpError.isTcpError(value), `values[${i}]`))
  })

  it("false for anything fast-check makes up", () =>
    fc.assert(
      fc.property(fc.anything({ withBigInt: true, withMap: true, withSet: true, withTypedArray: true }), (u) => {
        assert.isFalse(TcpError.isTcpError(u))
      }),
      { numRuns: 500 }
    ))

  it("tells errors apart from sockets and listeners, as their guards do", () => {
    for (const error of Object.values(instances)) {
      assert.isFalse(TcpSocket.isTcpSocket(error))
      assert.isFalse(TcpListener.isTcpListener(error))
    }
  })
})

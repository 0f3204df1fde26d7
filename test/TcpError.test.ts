/**
 * TcpError: the errno → tag table of DESIGN.md, `fromUnknown` on whatever
 * Node reports, `narrow`, the fields every error carries, and (checked by
 * `tsc --noEmit`, which covers test/) the exact error types of each call.
 */
import { assert, describe, expect, expectTypeOf, it } from "@effect/vitest"
import { Cause, Effect, Exit, Schema } from "effect"
import type { Scope } from "effect"
import * as fc from "fast-check"
import { TcpClient, TcpError, TcpListener, TcpSocket, TcpStorage } from "../src/index.ts"
import { checkFdLeaks } from "./helpers.ts"

/** DESIGN.md's error table: errno → tag. PeerClosed carries EPIPE (libdill's errno for a receive cut short) but an EPIPE from the kernel is BrokenPipe, so it is not in this mapping. */
const table: ReadonlyArray<readonly [errno: string, tag: TcpError.Tag]> = [
  ["ECONNREFUSED", "ConnRefused"],
  ["ECONNRESET", "ConnReset"],
  ["EHOSTUNREACH", "HostUnreach"],
  ["ENETUNREACH", "NetUnreach"],
  ["ENETDOWN", "NetDown"],
  ["ETIMEDOUT", "TimedOut"],
  ["EINVAL", "InvalidArgument"],
  ["EMFILE", "TooManyOpenFiles"],
  ["ENFILE", "SystemFileLimit"],
  ["ENOMEM", "OutOfMemory"],
  ["EPIPE", "BrokenPipe"],
  ["EADDRINUSE", "AddrInUse"],
  ["EADDRNOTAVAIL", "AddrNotAvail"],
  ["EACCES", "AccessDenied"],
  ["EPERM", "AccessDenied"],
  ["EBADF", "Closed"]
]

/**
 * DESIGN.md's tag set of each operation, in alphabetical order: checked
 * against the runtime sets `narrow` takes and against the error unions.
 */
const documented = {
  connect: [
    "AccessDenied",
    "AddrNotAvail",
    "ConnRefused",
    "ConnReset",
    "HostUnreach",
    "InvalidArgument",
    "NetDown",
    "NetUnreach",
    "OutOfMemory",
    "SystemError",
    "SystemFileLimit",
    "TimedOut",
    "TooManyOpenFiles"
  ],
  send: ["BrokenPipe", "Closed", "ConnReset", "InvalidArgument", "SystemError", "TimedOut"],
  recv: ["Closed", "ConnReset", "InvalidArgument", "PeerClosed", "SystemError", "TimedOut"],
  recvUntil: ["Closed", "ConnReset", "InvalidArgument", "MessageTooLarge", "PeerClosed", "SystemError", "TimedOut"],
  close: ["Closed", "ConnReset", "InvalidArgument", "SystemError", "TimedOut"],
  listen: [
    "AccessDenied",
    "AddrInUse",
    "AddrNotAvail",
    "InvalidArgument",
    "SystemError",
    "SystemFileLimit",
    "TooManyOpenFiles"
  ],
  accept: ["Closed", "InvalidArgument", "OutOfMemory", "SystemError", "SystemFileLimit", "TimedOut", "TooManyOpenFiles"],
  tls: ["CertificateRejected", "TlsHandshakeFailed"]
} as const

/** Every class, by tag, to check `instanceof` and construction. */
const classes = {
  ConnRefused: TcpError.ConnRefused,
  ConnReset: TcpError.ConnReset,
  HostUnreach: TcpError.HostUnreach,
  NetUnreach: TcpError.NetUnreach,
  NetDown: TcpError.NetDown,
  TimedOut: TcpError.TimedOut,
  InvalidArgument: TcpError.InvalidArgument,
  TooManyOpenFiles: TcpError.TooManyOpenFiles,
  SystemFileLimit: TcpError.SystemFileLimit,
  OutOfMemory: TcpError.OutOfMemory,
  BrokenPipe: TcpError.BrokenPipe,
  AddrInUse: TcpError.AddrInUse,
  AddrNotAvail: TcpError.AddrNotAvail,
  AccessDenied: TcpError.AccessDenied,
  Closed: TcpError.Closed,
  SystemError: TcpError.SystemError
} as const

const allTags: ReadonlyArray<TcpError.Tag> = [...Object.keys(classes) as Array<TcpError.Tag>, "PeerClosed"]

/** An object shaped like the `ErrnoException` Node hands to `'error'` listeners. */
const errnoException = (code: string, syscall: string): NodeJS.ErrnoException => {
  const error: NodeJS.ErrnoException = new Error(`${syscall} ${code} 127.0.0.1:6379`)
  error.code = code
  error.errno = -111
  error.syscall = syscall
  return error
}

const assertFields = (
  error: TcpError.TcpError,
  expected: { tag: TcpError.Tag; errno: string; syscall: string; address: string | undefined }
) => {
  assert.strictEqual(error._tag, expected.tag)
  assert.strictEqual(error.errno, expected.errno)
  assert.strictEqual(error.syscall, expected.syscall)
  assert.strictEqual(error.address, expected.address)
  assert.isString(error.message)
  assert.isAbove(error.message.length, 0, "message must be readable, not empty")
  assert.instanceOf(error, Error)
}

describe("TcpError", () => {
  checkFdLeaks()

  describe("fromCode", () => {
    for (const [errno, tag] of table) {
      it(`${errno} → ${tag}`, () => {
        const error = TcpError.fromCode(errno, "connect", "127.0.0.1:6379")
        assertFields(error, { tag, errno, syscall: "connect", address: "127.0.0.1:6379" })
        expect(error).toBeInstanceOf(classes[tag as keyof typeof classes])
        assert.include(error.message, errno)
      })
    }

    it("EPERM and EACCES are both AccessDenied but keep their own errno", () => {
      const perm = TcpError.fromCode("EPERM", "connect", "10.0.0.1:80")
      const acces = TcpError.fromCode("EACCES", "listen", "0.0.0.0:80")
      assert.strictEqual(perm._tag, "AccessDenied")
      assert.strictEqual(acces._tag, "AccessDenied")
      assert.strictEqual(perm.errno, "EPERM")
      assert.strictEqual(acces.errno, "EACCES")
    })

    it("EPIPE from the kernel is BrokenPipe, never PeerClosed", () => {
      const error = TcpError.fromCode("EPIPE", "send")
      assert.strictEqual(error._tag, "BrokenPipe")
      assert.notInstanceOf(error, TcpError.PeerClosed)
    })

    for (
      const errno of ["EPROTO", "EIO", "EAGAIN", "ECONNABORTED", "EWHATEVER", "", "econnrefused", "toString", "constructor", "__proto__"]
    ) {
      it(`unknown code ${JSON.stringify(errno)} → SystemError with errno kept`, () => {
        const error = TcpError.fromCode(errno, "read", "[::1]:80")
        assertFields(error, { tag: "SystemError", errno, syscall: "read", address: "[::1]:80" })
        assert.instanceOf(error, TcpError.SystemError)
      })
    }

    it("without an address, address is undefined and the message still readable", () => {
      const error = TcpError.fromCode("ECONNRESET", "recv")
      assertFields(error, { tag: "ConnReset", errno: "ECONNRESET", syscall: "recv", address: undefined })
      assert.include(error.message, "recv")
    })

    it("property: any errno string yields a known tag and keeps the errno", () => {
      const known = new Set<string>(allTags)
      // prototype keys are listed explicitly so the run is deterministic where it matters
      const errnos = fc.oneof(
        fc.string(),
        fc.constantFrom("__proto__", "constructor", "toString", "valueOf", "hasOwnProperty")
      )
      fc.assert(
        fc.property(errnos, fc.string(), (errno, syscall) => {
          const error = TcpError.fromCode(errno, syscall)
          assert.isTrue(known.has(error._tag))
          assert.strictEqual(error.errno, errno)
          assert.strictEqual(error.syscall, syscall)
        }),
        { numRuns: 500 }
      )
    })
  })

  describe("fromUnknown", () => {
    it("a Node ErrnoException keeps its code", () => {
      for (const [errno, tag] of table) {
        const error = TcpError.fromUnknown(errnoException(errno, "connect"), "connect", "127.0.0.1:6379")
        assertFields(error, { tag, errno, syscall: "connect", address: "127.0.0.1:6379" })
      }
    })

    it("a plain object with an errno code keeps it too", () => {
      const error = TcpError.fromUnknown({ code: "ECONNRESET" }, "read")
      assertFields(error, { tag: "ConnReset", errno: "ECONNRESET", syscall: "read", address: undefined })
    })

    it("an ErrnoException with an unknown errno is SystemError with that errno", () => {
      const error = TcpError.fromUnknown(errnoException("EPROTO", "read"), "recv", "127.0.0.1:1")
      assertFields(error, { tag: "SystemError", errno: "EPROTO", syscall: "recv", address: "127.0.0.1:1" })
    })

    it("a plain Error is SystemError, its message kept", () => {
      const error = TcpError.fromUnknown(new Error("boom"), "read", "127.0.0.1:1")
      assert.strictEqual(error._tag, "SystemError")
      assert.strictEqual(error.syscall, "read")
      assert.strictEqual(error.address, "127.0.0.1:1")
      assert.isString(error.errno)
      assert.isAbove(error.errno.length, 0)
      assert.include(error.message, "boom")
    })

    it("a string is SystemError, its text kept", () => {
      const error = TcpError.fromUnknown("socket hang up", "read")
      assert.strictEqual(error._tag, "SystemError")
      assert.include(error.message, "socket hang up")
    })

    it("{ code: \"ERR_STREAM_DESTROYED\" } (a Node code, not an errno) is SystemError, not a throw", () => {
      const plain = TcpError.fromUnknown({ code: "ERR_STREAM_DESTROYED" }, "write")
      assert.strictEqual(plain._tag, "SystemError")
      const real = Object.assign(new Error("Cannot call write after a stream was destroyed"), {
        code: "ERR_STREAM_DESTROYED"
      })
      const fromError = TcpError.fromUnknown(real, "write", "127.0.0.1:2")
      assert.strictEqual(fromError._tag, "SystemError")
      assert.strictEqual(fromError.syscall, "write")
      assert.strictEqual(fromError.address, "127.0.0.1:2")
    })

    it("odd values are SystemError, never a throw", () => {
      const odd: ReadonlyArray<unknown> = [
        undefined,
        null,
        42,
        Symbol("s"),
        { code: 42 },
        { code: null },
        [],
        () => 1
      ]
      for (const value of odd) {
        assert.strictEqual(TcpError.fromUnknown(value, "read")._tag, "SystemError", String(typeof value))
      }
    })

    it("an object without a prototype is SystemError, never a throw", () => {
      // e.g. a cause built with Object.create(null) by some library: String() of it throws.
      const bare: unknown = Object.create(null)
      const error = TcpError.fromUnknown(bare, "read")
      assert.strictEqual(error._tag, "SystemError")
    })

    it("property: fromUnknown never throws and always yields a known tag", () => {
      const known = new Set<string>(allTags)
      const values = fc.oneof(
        fc.anything({ withNullPrototype: true, withBigInt: true, withMap: true, withSet: true }),
        fc.constant(Object.create(null) as unknown),
        fc.record({ code: fc.string() })
      )
      fc.assert(
        fc.property(values, (u) => {
          const error = TcpError.fromUnknown(u, "read")
          assert.isTrue(known.has(error._tag))
          assert.strictEqual(error.syscall, "read")
        }),
        { numRuns: 1000 }
      )
    })
  })

  describe("narrow", () => {
    it("keeps a tag inside the operation's set (same error)", () => {
      const error = TcpError.fromCode("ECONNREFUSED", "connect", "127.0.0.1:1")
      const narrowed = TcpError.narrow(error, TcpError.connectTags)
      assert.strictEqual(narrowed, error)
    })

    it("turns a tag outside the set into SystemError keeping errno, syscall, address and message", () => {
      const cases: ReadonlyArray<readonly [TcpError.TcpError & { _tag: Exclude<TcpError.Tag, "PeerClosed" | TcpError.TlsError["_tag"]> }, ReadonlySet<TcpError.Tag>]> = [
        [TcpError.fromCode("EPIPE", "connect", "127.0.0.1:1"), TcpError.connectTags],
        [TcpError.fromCode("ECONNREFUSED", "write", "127.0.0.1:1"), TcpError.sendTags],
        [TcpError.fromCode("EADDRINUSE", "read", "127.0.0.1:1"), TcpError.recvTags],
        [TcpError.fromCode("EMFILE", "close", "127.0.0.1:1"), TcpError.closeTags],
        [TcpError.fromCode("EBADF", "listen", "127.0.0.1:1"), TcpError.listenTags],
        [TcpError.fromCode("ECONNRESET", "accept", "127.0.0.1:1"), TcpError.acceptTags]
      ]
      for (const [error, allowed] of cases) {
        assert.isFalse(allowed.has(error._tag), `${error._tag} should be outside the set`)
        const narrowed = TcpError.narrow(error, allowed)
        assert.strictEqual(narrowed._tag, "SystemError")
        assert.instanceOf(narrowed, TcpError.SystemError)
        assert.strictEqual(narrowed.errno, error.errno)
        assert.strictEqual(narrowed.syscall, error.syscall)
        assert.strictEqual(narrowed.address, error.address)
        assert.strictEqual(narrowed.message, error.message)
      }
    })

    it("the tag sets are exactly the unions of src/TcpError.ts", () => {
      const sorted = (set: ReadonlySet<string>): ReadonlyArray<string> => [...set].sort()
      assert.deepStrictEqual(sorted(TcpError.connectTags), documented.connect)
      assert.deepStrictEqual(sorted(TcpError.sendTags), documented.send)
      assert.deepStrictEqual(sorted(TcpError.recvTags), documented.recv)
      assert.deepStrictEqual(sorted(TcpError.recvUntilTags), documented.recvUntil)
      assert.deepStrictEqual(sorted(TcpError.closeTags), documented.close)
      assert.deepStrictEqual(sorted(TcpError.listenTags), documented.listen)
      assert.deepStrictEqual(sorted(TcpError.acceptTags), documented.accept)
    })
  })

  describe("error values", () => {
    it("every class carries errno, syscall, address, message and _tag", () => {
      for (const [tag, Class] of Object.entries(classes)) {
        const error = new Class({ errno: "EX", syscall: "sys", address: "127.0.0.1:9", message: "msg" })
        assert.strictEqual(error._tag, tag)
        assert.strictEqual(error.errno, "EX")
        assert.strictEqual(error.syscall, "sys")
        assert.strictEqual(error.address, "127.0.0.1:9")
        assert.strictEqual(error.message, "msg")
        assert.instanceOf(error, Error)
      }
    })

    it("PeerClosed carries the bytes that did arrive", () => {
      const error = TcpError.peerClosed("recv", new Uint8Array([1, 2, 3]), "127.0.0.1:9")
      assert.strictEqual(error._tag, "PeerClosed")
      assert.deepStrictEqual([...error.bytes], [1, 2, 3])
      assert.strictEqual(error.syscall, "recv")
      assert.strictEqual(error.address, "127.0.0.1:9")
      assert.isAbove(error.message.length, 0)
      assert.isString(error.errno)
    })

    it("errors are schemas: a decoded ConnRefused is a ConnRefused", () => {
      const decoded = Schema.decodeUnknownSync(TcpError.ConnRefused)({
        _tag: "ConnRefused",
        errno: "ECONNREFUSED",
        syscall: "connect",
        message: "m"
      })
      assert.instanceOf(decoded, TcpError.ConnRefused)
      assert.strictEqual(decoded.address, undefined)
    })

    it.effect("errors are yieldable: `yield* err` fails the effect with it", () =>
      Effect.gen(function*() {
        const error = TcpError.fromCode("ECONNRESET", "recv", "127.0.0.1:5")
        const program = Effect.gen(function*() {
          yield* error
          return "unreachable"
        })
        const exit = yield* Effect.exit(program)
        assert.isTrue(Exit.isFailure(exit))
        if (Exit.isFailure(exit)) {
          const failure = Cause.findErrorOption(exit.cause)
          assert.isTrue(failure._tag === "Some" && failure.value === error)
        }
        const flipped = yield* Effect.flip(program)
        assert.strictEqual(flipped, error)
        // and catchTag sees it by its tag
        const caught = yield* program.pipe(Effect.catchTag("ConnReset", (e) => Effect.succeed(e.errno)))
        assert.strictEqual(caught, "ECONNRESET")
      }))
  })

  describe("types (checked by tsc --noEmit)", () => {
    it("each union is exactly the documented set of tags", () => {
      type Documented<Operation extends keyof typeof documented> = (typeof documented)[Operation][number]
      expectTypeOf<TcpError.ConnectError["_tag"]>().toEqualTypeOf<Documented<"connect">>()
      expectTypeOf<TcpError.SendError["_tag"]>().toEqualTypeOf<Documented<"send">>()
      expectTypeOf<TcpError.RecvError["_tag"]>().toEqualTypeOf<Documented<"recv">>()
      expectTypeOf<TcpError.CloseError["_tag"]>().toEqualTypeOf<Documented<"close">>()
      expectTypeOf<TcpError.ListenError["_tag"]>().toEqualTypeOf<Documented<"listen">>()
      expectTypeOf<TcpError.AcceptError["_tag"]>().toEqualTypeOf<Documented<"accept">>()
      // Every tag is some operation's, and no operation has a tag outside `Tag`.
      expectTypeOf<TcpError.Tag>().toEqualTypeOf<Documented<keyof typeof documented>>()
      // The checks bite: one tag too many or too few is a compile error.
      // @ts-expect-error BrokenPipe is not a ConnectError
      expectTypeOf<TcpError.ConnectError["_tag"]>().toEqualTypeOf<TcpError.ConnectError["_tag"] | "BrokenPipe">()
      // @ts-expect-error ConnectError has SystemError
      expectTypeOf<TcpError.ConnectError["_tag"]>().toEqualTypeOf<Exclude<TcpError.ConnectError["_tag"], "SystemError">>()
      // The tag sets `narrow` takes match the unions.
      expectTypeOf(TcpError.connectTags).toEqualTypeOf<ReadonlySet<TcpError.ConnectError["_tag"]>>()
      expectTypeOf(TcpError.acceptTags).toEqualTypeOf<ReadonlySet<TcpError.AcceptError["_tag"]>>()
    })

    it("each call's error channel is its union", () => {
      // Without `tls` a connect has no TLS error in its type; with it, it has.
      const plain = () => TcpClient.connect("127.0.0.1:1")
      const secure = () => TcpClient.connect("127.0.0.1:1", { tls: {} })
      type Connect = ReturnType<typeof plain>
      expectTypeOf<Effect.Error<Connect>>().toEqualTypeOf<TcpError.ConnectError>()
      expectTypeOf<Effect.Error<ReturnType<typeof secure>>>().toEqualTypeOf<TcpError.ConnectError | TcpError.TlsError>()
      expectTypeOf<Effect.Success<Connect>>().toEqualTypeOf<TcpSocket.TcpSocket>()
      expectTypeOf<Effect.Services<Connect>>().toEqualTypeOf<TcpClient.TcpClient | Scope.Scope>()
      expectTypeOf<Effect.Error<ReturnType<typeof TcpClient.fromFd>>>().toEqualTypeOf<TcpError.ConnectError>()
      const viaService = (client: TcpClient.TcpClient["Service"]) => client.connect("127.0.0.1:1", { timeout: 5 })
      expectTypeOf<Effect.Error<ReturnType<typeof viaService>>>().toEqualTypeOf<TcpError.ConnectError>()

      expectTypeOf<Effect.Error<ReturnType<TcpSocket.TcpSocket["recv"]>>>().toEqualTypeOf<TcpError.RecvError>()
      expectTypeOf<Effect.Success<ReturnType<TcpSocket.TcpSocket["recv"]>>>().toEqualTypeOf<Uint8Array>()
      expectTypeOf<Effect.Error<ReturnType<TcpSocket.TcpSocket["recvInto"]>>>().toEqualTypeOf<TcpError.RecvError>()
      expectTypeOf<Effect.Error<ReturnType<TcpSocket.TcpSocket["recvv"]>>>().toEqualTypeOf<TcpError.RecvError>()
      expectTypeOf<Effect.Error<ReturnType<TcpSocket.TcpSocket["send"]>>>().toEqualTypeOf<TcpError.SendError>()
      expectTypeOf<Effect.Error<ReturnType<TcpSocket.TcpSocket["sendv"]>>>().toEqualTypeOf<TcpError.SendError>()
      expectTypeOf<Effect.Error<ReturnType<TcpSocket.TcpSocket["done"]>>>().toEqualTypeOf<TcpError.SendError>()
      expectTypeOf<Effect.Error<ReturnType<TcpSocket.TcpSocket["close"]>>>().toEqualTypeOf<TcpError.CloseError>()
      expectTypeOf<Effect.Error<TcpSocket.TcpSocket["abort"]>>().toEqualTypeOf<never>()

      type Listen = ReturnType<typeof TcpListener.listen>
      expectTypeOf<Effect.Error<Listen>>().toEqualTypeOf<TcpError.ListenError>()
      expectTypeOf<Effect.Services<Listen>>().toEqualTypeOf<Scope.Scope | TcpStorage.TcpStorage>()
      expectTypeOf<Effect.Error<ReturnType<typeof TcpListener.fromFd>>>().toEqualTypeOf<TcpError.ListenError>()
      expectTypeOf<Effect.Error<ReturnType<TcpListener.TcpListener["accept"]>>>().toEqualTypeOf<TcpError.AcceptError>()
      expectTypeOf<Effect.Success<ReturnType<TcpListener.TcpListener["accept"]>>>().toEqualTypeOf<TcpSocket.TcpSocket>()
      expectTypeOf<Effect.Error<TcpListener.TcpListener["close"]>>().toEqualTypeOf<never>()

      // @ts-expect-error recv cannot fail with BrokenPipe
      expectTypeOf<Effect.Error<ReturnType<TcpSocket.TcpSocket["recv"]>>>().toEqualTypeOf<TcpError.SendError>()
    })

    it("catchTags over every ConnectError tag leaves the error channel never", () => {
      const recover = <T extends TcpError.ConnectError["_tag"]>(tag: T) => () => Effect.succeed(tag)
      // A handler for every ConnectError tag but SystemError.
      const allButSystemError = {
        ConnRefused: recover("ConnRefused"),
        ConnReset: recover("ConnReset"),
        HostUnreach: recover("HostUnreach"),
        NetUnreach: recover("NetUnreach"),
        NetDown: recover("NetDown"),
        TimedOut: recover("TimedOut"),
        InvalidArgument: recover("InvalidArgument"),
        TooManyOpenFiles: recover("TooManyOpenFiles"),
        SystemFileLimit: recover("SystemFileLimit"),
        OutOfMemory: recover("OutOfMemory"),
        AddrNotAvail: recover("AddrNotAvail"),
        AccessDenied: recover("AccessDenied")
      }
      const connected = TcpClient.connect("127.0.0.1:1").pipe(
        Effect.catchTags({ ...allButSystemError, SystemError: recover("SystemError") })
      )
      expectTypeOf<Effect.Error<typeof connected>>().toEqualTypeOf<never>()
      expectTypeOf<Effect.Success<typeof connected>>().toEqualTypeOf<
        TcpSocket.TcpSocket | TcpError.ConnectError["_tag"]
      >()

      // One tag left out stays in the error channel, alone.
      const partial = TcpClient.connect("127.0.0.1:1").pipe(Effect.catchTags(allButSystemError))
      expectTypeOf<Effect.Error<typeof partial>>().toEqualTypeOf<TcpError.SystemError>()
      // @ts-expect-error the error channel is not never while SystemError is unhandled
      expectTypeOf<Effect.Error<typeof partial>>().toEqualTypeOf<never>()

      TcpClient.connect("127.0.0.1:1").pipe(
        // @ts-expect-error connect never fails with BrokenPipe: a handler for it is rejected
        Effect.catchTags({ BrokenPipe: () => Effect.void })
      )

      // Exhaustive recv handling: every RecvError tag.
      const received = Effect.gen(function*() {
        const socket = yield* TcpClient.connect("127.0.0.1:1")
        return yield* socket.recv(1)
      }).pipe(
        Effect.catchTags({
          ConnRefused: () => Effect.succeed(new Uint8Array()),
          ConnReset: () => Effect.succeed(new Uint8Array()),
          HostUnreach: () => Effect.succeed(new Uint8Array()),
          NetUnreach: () => Effect.succeed(new Uint8Array()),
          NetDown: () => Effect.succeed(new Uint8Array()),
          TimedOut: () => Effect.succeed(new Uint8Array()),
          InvalidArgument: () => Effect.succeed(new Uint8Array()),
          TooManyOpenFiles: () => Effect.succeed(new Uint8Array()),
          SystemFileLimit: () => Effect.succeed(new Uint8Array()),
          OutOfMemory: () => Effect.succeed(new Uint8Array()),
          AddrNotAvail: () => Effect.succeed(new Uint8Array()),
          AccessDenied: () => Effect.succeed(new Uint8Array()),
          SystemError: () => Effect.succeed(new Uint8Array()),
          PeerClosed: (e) => Effect.succeed(e.bytes),
          Closed: () => Effect.succeed(new Uint8Array())
        })
      )
      expectTypeOf<Effect.Error<typeof received>>().toEqualTypeOf<never>()
      expect(Effect.isEffect(connected) && Effect.isEffect(partial) && Effect.isEffect(received)).toBe(true)
    })
  })
})

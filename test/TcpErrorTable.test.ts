/**
 * TcpError written from one table: each call's tags are one `as const` list
 * from which both its union type and its runtime set come, errnos map to tags
 * from one table, and `make` builds any error from named fields with the
 * message derived from them. The type checks run under `tsc --noEmit`.
 */
import { assert, describe, expectTypeOf, it } from "@effect/vitest"
import { TcpError } from "../src/index.ts"

/** DESIGN.md's table: each tag (but PeerClosed and SystemError) and the errno it carries when raised. */
const carried = {
  ConnRefused: "ECONNREFUSED",
  ConnReset: "ECONNRESET",
  HostUnreach: "EHOSTUNREACH",
  NetUnreach: "ENETUNREACH",
  NetDown: "ENETDOWN",
  TimedOut: "ETIMEDOUT",
  InvalidArgument: "EINVAL",
  TooManyOpenFiles: "EMFILE",
  SystemFileLimit: "ENFILE",
  OutOfMemory: "ENOMEM",
  BrokenPipe: "EPIPE",
  AddrInUse: "EADDRINUSE",
  AddrNotAvail: "EADDRNOTAVAIL",
  AccessDenied: "EACCES",
  Closed: "EBADF",
  MessageTooLarge: "EMSGSIZE"
} as const satisfies { readonly [T in Exclude<TcpError.Tag, "PeerClosed" | "SystemError" | TcpError.TlsError["_tag"]>]: string }

/**
 * One key per tag of each union: the mapped type makes a key missing from,
 * or foreign to, the union a compile error, so comparing these keys with the
 * runtime sets ties each set to its type.
 */
type Every<T extends string> = { readonly [K in T]: true }
const connect: Every<TcpError.ConnectError["_tag"]> = {
  ConnRefused: true,
  ConnReset: true,
  HostUnreach: true,
  NetUnreach: true,
  NetDown: true,
  TimedOut: true,
  InvalidArgument: true,
  TooManyOpenFiles: true,
  SystemFileLimit: true,
  OutOfMemory: true,
  AddrNotAvail: true,
  AccessDenied: true,
  SystemError: true
}
const send: Every<TcpError.SendError["_tag"]> = {
  ConnReset: true,
  TimedOut: true,
  InvalidArgument: true,
  BrokenPipe: true,
  Closed: true,
  SystemError: true
}
const recv: Every<TcpError.RecvError["_tag"]> = {
  ConnReset: true,
  TimedOut: true,
  InvalidArgument: true,
  PeerClosed: true,
  Closed: true,
  SystemError: true
}
const close: Every<TcpError.CloseError["_tag"]> = {
  ConnReset: true,
  TimedOut: true,
  InvalidArgument: true,
  Closed: true,
  SystemError: true
}
const listen: Every<TcpError.ListenError["_tag"]> = {
  AddrInUse: true,
  AddrNotAvail: true,
  AccessDenied: true,
  InvalidArgument: true,
  TooManyOpenFiles: true,
  SystemFileLimit: true,
  SystemError: true
}
const accept: Every<TcpError.AcceptError["_tag"]> = {
  TimedOut: true,
  InvalidArgument: true,
  TooManyOpenFiles: true,
  SystemFileLimit: true,
  OutOfMemory: true,
  Closed: true,
  SystemError: true
}

const sorted = (keys: Iterable<string>) => [...keys].sort()

describe("TcpError from one table", () => {
  describe("each call's runtime set is its union's tags", () => {
    const cases = [
      ["connect", TcpError.connectTags, connect],
      ["send", TcpError.sendTags, send],
      ["recv", TcpError.recvTags, recv],
      ["close", TcpError.closeTags, close],
      ["listen", TcpError.listenTags, listen],
      ["accept", TcpError.acceptTags, accept]
    ] as const
    for (const [call, set, every] of cases) {
      it(call, () => {
        assert.deepStrictEqual(sorted(set), sorted(Object.keys(every)))
      })
    }
  })

  describe("make from named fields", () => {
    for (const [tag, errno] of Object.entries(carried) as Array<[keyof typeof carried, string]>) {
      it(`${tag} carries ${errno} and the errno's description`, () => {
        const error = TcpError.make({ tag, syscall: "connect", address: "127.0.0.1:6379" })
        assert.strictEqual(error._tag, tag)
        assert.strictEqual(error.errno, errno)
        assert.strictEqual(error.syscall, "connect")
        assert.strictEqual(error.address, "127.0.0.1:6379")
        assert.isTrue(TcpError.isTcpError(error))
        // The description is the one fromCode gives the same errno: one table for both.
        assert.strictEqual(error.message, TcpError.fromCode(errno, "connect", "127.0.0.1:6379").message)
        assert.match(error.message, new RegExp(`^connect 127\\.0\\.0\\.1:6379: [a-z ]+ \\(${errno}\\)$`))
      })
    }

    it("the TLS errors carry EPROTO and their reason, which an EPROTO from the kernel is not", () => {
      for (const tag of ["TlsHandshakeFailed", "CertificateRejected"] as const) {
        const error = TcpError.make({ tag, syscall: "connect", address: "localhost:6380", reason: "CERT_HAS_EXPIRED" })
        assert.strictEqual(error._tag, tag)
        assert.strictEqual(error.errno, "EPROTO")
        assert.strictEqual(error.reason, "CERT_HAS_EXPIRED")
        assert.match(error.message, /^connect localhost:6380: .*CERT_HAS_EXPIRED \(EPROTO\)$/)
        assert.isTrue(TcpError.isTcpError(error))
        assert.isTrue(TcpError.tlsTags.has(error._tag))
      }
      assert.strictEqual(TcpError.fromCode("EPROTO", "read")._tag, "SystemError")
    })

    it("the message is derived from syscall, address, detail and errno", () => {
      const reset = TcpError.make({ tag: "ConnReset", syscall: "recv", address: "127.0.0.1:6379" })
      assert.strictEqual(reset.message, "recv 127.0.0.1:6379: connection reset by peer (ECONNRESET)")
      const detailed = TcpError.make({ tag: "ConnReset", syscall: "recv", detail: "an earlier receive stopped halfway" })
      assert.strictEqual(detailed.message, "recv: an earlier receive stopped halfway (ECONNRESET)")
      assert.strictEqual(detailed.address, undefined)
    })

    it("an errno other than the tag's first is kept, with its own description", () => {
      const perm = TcpError.make({ tag: "AccessDenied", errno: "EPERM", syscall: "connect", address: "10.0.0.1:80" })
      assert.instanceOf(perm, TcpError.AccessDenied)
      assert.strictEqual(perm.errno, "EPERM")
      assert.strictEqual(perm.message, "connect 10.0.0.1:80: operation not permitted (EPERM)")
      const name = TcpError.make({ tag: "AddrNotAvail", errno: "ENOTFOUND", syscall: "connect", address: "x.invalid:1" })
      assert.strictEqual(name.message, "connect x.invalid:1: name does not resolve (ENOTFOUND)")
    })

    it("SystemError keeps the errno it is given", () => {
      const error = TcpError.make({ tag: "SystemError", errno: "EPROTO", syscall: "read" })
      assert.instanceOf(error, TcpError.SystemError)
      assert.strictEqual(error.errno, "EPROTO")
      assert.strictEqual(error.message, "read: system error (EPROTO)")
    })

    it("PeerClosed carries EPIPE and the bytes that arrived", () => {
      const error = TcpError.make({ tag: "PeerClosed", syscall: "recv", address: "[::1]:80", bytes: new Uint8Array([7, 8]) })
      assert.instanceOf(error, TcpError.PeerClosed)
      assert.strictEqual(error.errno, "EPIPE")
      assert.deepStrictEqual([...error.bytes], [7, 8])
      assert.strictEqual(error.message, "recv [::1]:80: peer closed after 2 bytes")
    })

    it("the positional form and the shorthands give the same errors as the named fields", () => {
      const same = (a: TcpError.TcpError, b: TcpError.TcpError) => {
        assert.strictEqual(a.constructor, b.constructor)
        assert.deepStrictEqual(
          { tag: a._tag, errno: a.errno, syscall: a.syscall, address: a.address, message: a.message },
          { tag: b._tag, errno: b.errno, syscall: b.syscall, address: b.address, message: b.message }
        )
      }
      same(
        TcpError.make(TcpError.BrokenPipe, "EPIPE", "send", "127.0.0.1:1", "sending side already finished"),
        TcpError.make({ tag: "BrokenPipe", syscall: "send", address: "127.0.0.1:1", detail: "sending side already finished" })
      )
      same(
        TcpError.make(TcpError.AddrInUse, "EADDRINUSE", "listen", "127.0.0.1:1", undefined),
        TcpError.make({ tag: "AddrInUse", syscall: "listen", address: "127.0.0.1:1" })
      )
      same(TcpError.invalid("recv", "bad length"), TcpError.make({ tag: "InvalidArgument", syscall: "recv", detail: "bad length" }))
      same(TcpError.timedOut("recv", "a:1"), TcpError.make({ tag: "TimedOut", syscall: "recv", address: "a:1", detail: "deadline reached" }))
      same(TcpError.closed("send"), TcpError.make({ tag: "Closed", syscall: "send" }))
      same(TcpError.outOfMemory("connect", "pool"), TcpError.make({ tag: "OutOfMemory", syscall: "connect", detail: "pool" }))
      same(TcpError.peerClosed("recv", new Uint8Array(3)), TcpError.make({ tag: "PeerClosed", syscall: "recv", bytes: new Uint8Array(3) }))
    })
  })

  describe("types (checked by tsc --noEmit)", () => {
    it("each union is exactly its classes, as before the lists", () => {
      expectTypeOf<TcpError.ConnectError>().toEqualTypeOf<
        | TcpError.ConnRefused
        | TcpError.ConnReset
        | TcpError.HostUnreach
        | TcpError.NetUnreach
        | TcpError.NetDown
        | TcpError.TimedOut
        | TcpError.InvalidArgument
        | TcpError.TooManyOpenFiles
        | TcpError.SystemFileLimit
        | TcpError.OutOfMemory
        | TcpError.AddrNotAvail
        | TcpError.AccessDenied
        | TcpError.SystemError
      >()
      expectTypeOf<TcpError.SendError>().toEqualTypeOf<
        | TcpError.ConnReset
        | TcpError.TimedOut
        | TcpError.InvalidArgument
        | TcpError.BrokenPipe
        | TcpError.Closed
        | TcpError.SystemError
      >()
      expectTypeOf<TcpError.RecvError>().toEqualTypeOf<
        | TcpError.ConnReset
        | TcpError.TimedOut
        | TcpError.InvalidArgument
        | TcpError.PeerClosed
        | TcpError.Closed
        | TcpError.SystemError
      >()
      expectTypeOf<TcpError.CloseError>().toEqualTypeOf<
        TcpError.ConnReset | TcpError.TimedOut | TcpError.InvalidArgument | TcpError.Closed | TcpError.SystemError
      >()
      expectTypeOf<TcpError.ListenError>().toEqualTypeOf<
        | TcpError.AddrInUse
        | TcpError.AddrNotAvail
        | TcpError.AccessDenied
        | TcpError.InvalidArgument
        | TcpError.TooManyOpenFiles
        | TcpError.SystemFileLimit
        | TcpError.SystemError
      >()
      expectTypeOf<TcpError.AcceptError>().toEqualTypeOf<
        | TcpError.TimedOut
        | TcpError.InvalidArgument
        | TcpError.TooManyOpenFiles
        | TcpError.SystemFileLimit
        | TcpError.OutOfMemory
        | TcpError.Closed
        | TcpError.SystemError
      >()
      expectTypeOf<TcpError.TcpError>().toEqualTypeOf<
        | TcpError.ConnectError
        | TcpError.SendError
        | TcpError.RecvError
        | TcpError.CloseError
        | TcpError.ListenError
        | TcpError.AcceptError
        | TcpError.RecvUntilError
        | TcpError.TlsError
      >()
      expectTypeOf<TcpError.RecvUntilError>().toEqualTypeOf<TcpError.RecvError | TcpError.MessageTooLarge>()
      expectTypeOf<TcpError.Tag>().toEqualTypeOf<TcpError.TcpError["_tag"]>()
      // @ts-expect-error the check bites: PeerClosed is a RecvError, not a SendError
      expectTypeOf<TcpError.SendError>().toEqualTypeOf<TcpError.SendError | TcpError.PeerClosed>()
    })

    it("ErrorOf names a tag's class", () => {
      expectTypeOf<TcpError.ErrorOf<"ConnReset">>().toEqualTypeOf<TcpError.ConnReset>()
      expectTypeOf<TcpError.ErrorOf<"PeerClosed" | "Closed">>().toEqualTypeOf<TcpError.PeerClosed | TcpError.Closed>()
      expectTypeOf<TcpError.ErrorOf<TcpError.Tag>>().toEqualTypeOf<TcpError.TcpError>()
    })

    it("the sets narrow takes are typed by their unions", () => {
      expectTypeOf(TcpError.connectTags).toEqualTypeOf<ReadonlySet<TcpError.ConnectError["_tag"]>>()
      expectTypeOf(TcpError.sendTags).toEqualTypeOf<ReadonlySet<TcpError.SendError["_tag"]>>()
      expectTypeOf(TcpError.recvTags).toEqualTypeOf<ReadonlySet<TcpError.RecvError["_tag"]>>()
      expectTypeOf(TcpError.closeTags).toEqualTypeOf<ReadonlySet<TcpError.CloseError["_tag"]>>()
      expectTypeOf(TcpError.listenTags).toEqualTypeOf<ReadonlySet<TcpError.ListenError["_tag"]>>()
      expectTypeOf(TcpError.acceptTags).toEqualTypeOf<ReadonlySet<TcpError.AcceptError["_tag"]>>()
      expectTypeOf(TcpError.narrow(TcpError.fromCode("EPIPE", "send"), TcpError.sendTags))
        .toEqualTypeOf<TcpError.SendError>()
    })

    it("make returns the tag's class and takes only that tag's fields", () => {
      expectTypeOf(TcpError.make({ tag: "ConnReset", syscall: "recv" })).toEqualTypeOf<TcpError.ConnReset>()
      expectTypeOf(TcpError.make({ tag: "PeerClosed", syscall: "recv", bytes: new Uint8Array() }))
        .toEqualTypeOf<TcpError.PeerClosed>()
      expectTypeOf(TcpError.make({ tag: "SystemError", errno: "EPROTO", syscall: "read" }))
        .toEqualTypeOf<TcpError.SystemError>()
      // The positional form still builds whatever class it is given.
      expectTypeOf(TcpError.make(TcpError.ConnRefused, "ECONNREFUSED", "connect", "a:1", undefined))
        .toEqualTypeOf<TcpError.ConnRefused>()

      // Compiled, never run: each call below must be a type error.
      const rejected = () => {
        // @ts-expect-error the message is derived, never passed
        TcpError.make({ tag: "ConnReset", syscall: "recv", message: "hand-written" })
        // @ts-expect-error ConnReset's errno is ECONNRESET: EPIPE belongs to BrokenPipe
        TcpError.make({ tag: "ConnReset", errno: "EPIPE", syscall: "recv" })
        // @ts-expect-error SystemError needs the errno it stands for
        TcpError.make({ tag: "SystemError", syscall: "read" })
        // @ts-expect-error PeerClosed needs the bytes that arrived
        TcpError.make({ tag: "PeerClosed", syscall: "recv" })
        // @ts-expect-error PeerClosed's message says how many bytes arrived: no detail
        TcpError.make({ tag: "PeerClosed", syscall: "recv", bytes: new Uint8Array(), detail: "why" })
        // @ts-expect-error not a tag
        TcpError.make({ tag: "Refused", syscall: "connect" })
      }
      assert.isFunction(rejected)
    })
  })
})

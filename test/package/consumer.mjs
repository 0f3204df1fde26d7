// A user of the published package, in plain JavaScript: test/package/check.ts
// copies it into a project that installed the packed tarball, and runs it
// under Node 24 and under the oldest Node 22 `engines` allows. It prints one
// line per check and exits 1 at the first that fails.
import { Effect } from "effect"
import { TcpClient, TcpError, TcpListener, TcpNode, TcpTls } from "effect-tcp"
import * as TcpErrorModule from "effect-tcp/TcpError"
import * as Net from "node:net"

const T = { timeout: "5 seconds" }

const fail = (message) => {
  throw new Error(message)
}

/** A loopback port nothing listens on: bound by the kernel, then released. */
const closedPort = () =>
  new Promise((resolve, reject) => {
    const server = Net.createServer()
    server.once("error", reject)
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address()
      server.close(() => resolve(port))
    })
  })

/** A node:net server on loopback that hands each connection to `onConnection`. */
const peerServer = (onConnection) =>
  new Promise((resolve, reject) => {
    const server = Net.createServer(onConnection)
    server.once("error", reject)
    server.listen(0, "127.0.0.1", () => resolve(server))
  })


// Certificates for the TLS checks, made once with openssl (EC P-256, valid
// until 2126): a CA, a server certificate for localhost and 127.0.0.1 and a
// client certificate it signed, and a client certificate it did not sign.
const pki = {
  ca: `-----BEGIN CERTIFICATE-----
MIIBpjCCAU2gAwIBAgIUUwa3IDVZ3VpwewAoI6sRvpbXm+AwCgYIKoZIzj0EAwIw
IDEeMBwGA1UEAwwVZWZmZWN0LXRjcC1wYWNrYWdlLWNhMCAXDTI2MTIwMjAwNDgz
OFoYDzIxMjYxMTA4MDA0ODM4WjAgMR4wHAYDVQQDDBVlZmZlY3QtdGNwLXBhY2th
Z2UtY2EwWTATBgcqhkjOPQIBBggqhkjOPQMBBwNCAAT29XTQZ/0GsNW4MDRrYW+y
M6g9Pi6wryQXfMVOTmpVVsvVA8hJBiXEFfEEURs0azKdx7K71HsW1MVICexNVz5R
o2MwYTAdBgNVHQ4EFgQU76BgN4rSOhtcPsjC61Rtl/2jccYwHwYDVR0jBBgwFoAU
76BgN4rSOhtcPsjC61Rtl/2jccYwDwYDVR0TAQH/BAUwAwEB/zAOBgNVHQ8BAf8E
BAMCAQYwCgYIKoZIzj0EAwIDRwAwRAIgGdRwXzD4fFYmptkCWY6iATbjAqmfHpi+
XCd+WAzESh4CICusaf10rRAC2+EkJrVP7XVMP9+sGdP7QwU8yr4C9EGJ
-----END CERTIFICATE-----`,
  server: {
    cert: `-----BEGIN CERTIFICATE-----
MIIBqTCCAVGgAwIBAgIUUjHhu40uQyP/Jzgq2sLjo5PctT0wCgYIKoZIzj0EAwIw
IDEeMBwGA1UEAwwVZWZmZWN0LXRjcC1wYWNrYWdlLWNhMCAXDTI2MTIwMjAwNDgz
OFoYDzIxMjYxMTA4MDA0ODM4WjAUMRIwEAYDVQQDDAlsb2NhbGhvc3QwWTATBgcq
hkjOPQIBBggqhkjOPQMBBwNCAAScFx8foF5mGjep4/zhgJ9smPqS4n+hHJlGow60
hCJpV5iyCiB01IspXzP6gXbv4Od3WmHJfY4p9XWb7DcCANn7o3MwcTAaBgNVHREE
EzARgglsb2NhbGhvc3SHBH8AAAEwEwYDVR0lBAwwCgYIKwYBBQUHAwEwHQYDVR0O
BBYEFDtjhYQLGTa7wiqm0azIVOCDU8MFMB8GA1UdIwQYMBaAFO+gYDeK0jobXD7I
wutUbZf9o3HGMAoGCCqGSM49BAMCA0YAMEMCH1Mo8F2goipj68E6Cgg9paIvKhyP
TV1VYdXih3eWpKsCIHabsPfr/e3YT/Wm1vbGp6ypLs7WwgWVHzkBXUQxDf8s
-----END CERTIFICATE-----`,
    key: `-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgZizHBG2qSeAbqYX7
kFSd+nEx8OVDHm98CUjO7TS7RluhRANCAAScFx8foF5mGjep4/zhgJ9smPqS4n+h
HJlGow60hCJpV5iyCiB01IspXzP6gXbv4Od3WmHJfY4p9XWb7DcCANn7
-----END PRIVATE KEY-----`
  },
  client: {
    cert: `-----BEGIN CERTIFICATE-----
MIIBlDCCATqgAwIBAgIUUjHhu40uQyP/Jzgq2sLjo5PctT4wCgYIKoZIzj0EAwIw
IDEeMBwGA1UEAwwVZWZmZWN0LXRjcC1wYWNrYWdlLWNhMCAXDTI2MTIwMjAwNDgz
OFoYDzIxMjYxMTA4MDA0ODM4WjAZMRcwFQYDVQQDDA5wYWNrYWdlLWNsaWVudDBZ
MBMGByqGSM49AgEGCCqGSM49AwEHA0IABMBZPOacVEsO8ZX6veXuJpXJinav2Le5
3oWgrAZeeOhbdQlppKMp2U3VASINW8Z7STqssuaBEwqDmEbsOeXzXj+jVzBVMBMG
A1UdJQQMMAoGCCsGAQUFBwMCMB0GA1UdDgQWBBRCjpYDUq2RuUdMciZeE6GpPjCN
2jAfBgNVHSMEGDAWgBTvoGA3itI6G1w+yMLrVG2X/aNxxjAKBggqhkjOPQQDAgNI
ADBFAiBV6Bm+8FXswEojM7ovUaU2Vly//ovjt5Kw+V6G2WnNLwIhAPRDrBZ71m95
pho/xJwQ/gvew2dOPwSWu0kXGpJcnuOW
-----END CERTIFICATE-----`,
    key: `-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg6fIroiEW2Z0FZ8k7
gCsXkJP5V9RiOhm88devap1Zsz2hRANCAATAWTzmnFRLDvGV+r3l7iaVyYp2r9i3
ud6FoKwGXnjoW3UJaaSjKdlN1QEiDVvGe0k6rLLmgRMKg5hG7Dnl814/
-----END PRIVATE KEY-----`
  },
  rogue: {
    cert: `-----BEGIN CERTIFICATE-----
MIIBiTCCAS+gAwIBAgIUYDEi/fP7oWq7IDlAnIm/Ax0AYz0wCgYIKoZIzj0EAwIw
GTEXMBUGA1UEAwwOcGFja2FnZS1jbGllbnQwIBcNMjYxMjAyMDA0ODM4WhgPMjEy
NjExMDgwMDQ4MzhaMBkxFzAVBgNVBAMMDnBhY2thZ2UtY2xpZW50MFkwEwYHKoZI
zj0CAQYIKoZIzj0DAQcDQgAE3lcxg8J9e5Y8sTeR9ihB9+wV9m57QKyL79brWXtY
RHw12LViTsUbGzCILXjYk3a6nAY/nWiAtwleq7zJVY5uTaNTMFEwHQYDVR0OBBYE
FJHgrrM+EXgGbiyHv1O95RK48b8OMB8GA1UdIwQYMBaAFJHgrrM+EXgGbiyHv1O9
5RK48b8OMA8GA1UdEwEB/wQFMAMBAf8wCgYIKoZIzj0EAwIDSAAwRQIgMhlVCzZs
RdX8p8F2urIjZ5pPoq+ZEnuQF/GP/0DlMLgCIQCSfn0fc0Tyr26dzEHxnK+LdoJC
d1I9lcpKNOnGUpq9vw==
-----END CERTIFICATE-----`,
    key: `-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgyU0srikIMff8T05d
d2nABZxr4Cjtd0pi62NnwUUCci2hRANCAATeVzGDwn17ljyxN5H2KEH37BX2bntA
rIvv1utZe1hEfDXYtWJOxRsbMIgteNiTdrqcBj+daIC3CV6rvMlVjm5N
-----END PRIVATE KEY-----`
  }
}

const checks = {
  async "connect to a closed port fails ConnRefused, caught with Effect.catchTag"() {
    const port = await closedPort()
    const outcome = await TcpClient.connect(`127.0.0.1:${port}`, T).pipe(
      Effect.as("connected"),
      Effect.scoped,
      Effect.catchTag("ConnRefused", (error) => Effect.succeed(`${error._tag} ${error.errno}`)),
      Effect.provide(TcpNode.layer),
      Effect.runPromise
    )
    if (outcome !== "ConnRefused ECONNREFUSED") fail(`expected ConnRefused ECONNREFUSED, got ${outcome}`)
  },

  async "listen, serve, connect, send, recv exactly, close"() {
    const reply = await Effect.gen(function*() {
      const listener = yield* TcpListener.listen("127.0.0.1:0")
      yield* Effect.forkScoped(listener.pipe(TcpListener.serve((socket) =>
        Effect.gen(function*() {
          yield* socket.send(yield* socket.recv(5, T))
          yield* socket.close()
        })
      )))
      const socket = yield* TcpClient.connect(`127.0.0.1:${listener.port}`, T)
      yield* socket.send(new TextEncoder().encode("hello"))
      const bytes = yield* socket.recv(5, T)
      yield* socket.close()
      return new TextDecoder().decode(bytes)
    }).pipe(Effect.scoped, Effect.provide(TcpNode.layer), Effect.runPromise)
    if (reply !== "hello") fail(`expected the echo "hello", got ${JSON.stringify(reply)}`)
  },

  // Node 22's libuv reports a reset that arrives behind unread bytes as the
  // end of the stream; the library must still say ConnReset, as on Node 24.
  async "a reset behind unread bytes is ConnReset after those bytes, not the peer's FIN"() {
    const sent = 50_000
    let peerGone
    const gone = new Promise((resolve) => (peerGone = resolve))
    const server = await peerServer((peer) => {
      peer.on("error", () => {})
      peer.on("close", () => peerGone())
      // Only once the client is connected (its byte arrived), or the reset would fail the connect.
      peer.once("data", () => peer.write(new Uint8Array(sent).fill(7), () => peer.resetAndDestroy()))
    })
    try {
      const outcome = await Effect.gen(function*() {
        const socket = yield* TcpClient.connect(`127.0.0.1:${server.address().port}`, T)
        yield* socket.send(new Uint8Array([1]))
        // The 4 KiB slot fills and reading pauses: the rest and the reset wait in the kernel together.
        yield* Effect.promise(() => gone)
        let received = 0
        for (let i = 0; i < 1000; i++) {
          const exit = yield* Effect.exit(socket.recv(1000, T))
          if (exit._tag === "Success") received += exit.value.length
          else return { received, error: yield* Effect.flip(exit) }
        }
        return { received, error: undefined }
      }).pipe(Effect.scoped, Effect.provide(TcpNode.layerWith({ slots: 2, bufferSize: 4096 })), Effect.runPromise)
      if (outcome.error?._tag !== "ConnReset") {
        fail(`expected ConnReset after the bytes, got ${outcome.error?._tag ?? "no error"} after ${outcome.received} bytes`)
      }
      if (outcome.received > sent) fail(`received ${outcome.received} of ${sent} bytes`)
    } finally {
      server.close()
    }
  },

  // TLS reads Node's server-side verdict on a client certificate from a field
  // tls.Server uses: checked under each Node line the package supports.
  async "TLS: listen and connect with a CA; a client certificate the CA did not sign is refused"() {
    const outcome = await Effect.gen(function*() {
      const listener = yield* TcpListener.listen("127.0.0.1:0", {
        tls: { ...pki.server, ca: pki.ca, requestCert: true }
      })
      yield* Effect.forkScoped(listener.pipe(TcpListener.serve((socket) =>
        Effect.flatMap(socket.recv(5, T), (bytes) => socket.send(bytes))
      )))
      const address = `localhost:${listener.port}`
      const trusted = yield* TcpClient.connect(address, { tls: { ca: pki.ca, ...pki.client }, ...T })
      yield* trusted.send(new TextEncoder().encode("hello"))
      const echo = new TextDecoder().decode(yield* trusted.recv(5, T))
      const rogue = yield* Effect.scoped(Effect.gen(function*() {
        const socket = yield* TcpClient.connect(address, { tls: { ca: pki.ca, ...pki.rogue }, ...T })
        yield* socket.send(new TextEncoder().encode("steal"))
        return yield* socket.recv(5, T)
      })).pipe(Effect.match({ onFailure: (error) => error._tag, onSuccess: () => "served" }))
      return { echo, protocol: trusted.tls?.protocol, rogue }
    }).pipe(Effect.scoped, Effect.provide(TcpNode.layer), Effect.runPromise)
    if (outcome.echo !== "hello") fail(`expected the echo "hello", got ${JSON.stringify(outcome.echo)}`)
    if (outcome.protocol !== "TLSv1.3") fail(`expected TLSv1.3, got ${outcome.protocol}`)
    // TLS 1.3: the client's handshake ends before the server's verdict, which the client meets as a reset or an end.
    if (outcome.rogue === "served") fail("a client certificate the CA did not sign was served")
  },

  async "TLS: STARTTLS with TcpTls.client and TcpTls.server"() {
    const line = await Effect.gen(function*() {
      const listener = yield* TcpListener.listen("127.0.0.1:0")
      yield* Effect.forkScoped(listener.pipe(TcpListener.serve((plain) =>
        Effect.gen(function*() {
          yield* plain.recvUntil("\r\n", T)
          yield* plain.send(new TextEncoder().encode("OK\r\n"))
          const secure = yield* TcpTls.server(plain, { ...pki.server, ...T })
          yield* secure.send(yield* secure.recvUntil("\r\n", T))
        })
      )))
      const plain = yield* TcpClient.connect(`127.0.0.1:${listener.port}`, T)
      yield* plain.send(new TextEncoder().encode("STARTTLS\r\n"))
      yield* plain.recvUntil("\r\n", T)
      const secure = yield* TcpTls.client(plain, { ca: pki.ca, serverName: "localhost", ...T })
      yield* secure.send(new TextEncoder().encode("over tls\r\n"))
      return new TextDecoder().decode(yield* secure.recv(8, T))
    }).pipe(Effect.scoped, Effect.provide(TcpNode.layer), Effect.runPromise)
    if (line !== "over tls") fail(`expected "over tls", got ${JSON.stringify(line)}`)
  },

  async "effect-tcp/TcpError is the module index.js exports"() {
    if (TcpErrorModule.ConnRefused !== TcpError.ConnRefused) fail("two copies of TcpError")
  },

  async "effect-tcp/internal/* is not exported"() {
    const outcome = await import("effect-tcp/internal/address").then(() => "imported", (error) => error.code)
    if (outcome !== "ERR_PACKAGE_PATH_NOT_EXPORTED") fail(`expected ERR_PACKAGE_PATH_NOT_EXPORTED, got ${outcome}`)
  }
}

for (const [name, check] of Object.entries(checks)) {
  try {
    await check()
    console.log(`  ok   ${name}`)
  } catch (error) {
    console.log(`  FAIL ${name}: ${error instanceof Error ? error.message : String(error)}`)
    process.exit(1)
  }
}

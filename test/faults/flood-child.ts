/**
 * A hostile peer in its own process (so its memory is not the test's), for
 * test/faults/hostile.test.ts:
 *
 *     node test/faults/flood-child.ts <port> <connections>
 *
 * Connects `connections` sockets to 127.0.0.1:<port> and listens on
 * 127.0.0.1:0 (its port is the first line it prints); every socket, in or
 * out, is written 1 MiB chunks of 0x5a as fast as the kernel takes them
 * (respecting `drain`, so this process's own memory stays flat). On a line
 * on stdin it prints `{ "flushed": bytes the kernel took, "sockets": n }` and
 * goes on. It exits when stdin closes, or after 60 s whatever happens.
 */
import * as Net from "node:net"

const port = Number(process.argv[2])
const connections = Number(process.argv[3])
const chunk = Buffer.alloc(1024 * 1024, 0x5a)
const sockets: Array<Net.Socket> = []

const flood = (socket: Net.Socket) => {
  sockets.push(socket)
  socket.on("error", () => {})
  socket.setNoDelay(true)
  const go = () => {
    while (!socket.destroyed && socket.write(chunk)) {
      // keep writing while Node's queue is under its high-water mark
    }
  }
  socket.on("drain", go)
  go()
}

const server = Net.createServer(flood)
server.listen(0, "127.0.0.1", () => {
  const bound = server.address() as Net.AddressInfo
  process.stdout.write(`${JSON.stringify({ port: bound.port })}\n`)
  for (let i = 0; i < connections; i++) flood(Net.connect({ port, host: "127.0.0.1" }))
})

process.stdin.on("data", () => {
  const flushed = sockets.reduce((sum, s) => sum + s.bytesWritten - s.writableLength, 0)
  process.stdout.write(`${JSON.stringify({ flushed, sockets: sockets.length })}\n`)
})
process.stdin.on("end", () => process.exit(0))
setTimeout(() => process.exit(0), 60_000).unref()

/**
 * Interruption storm: fast-check generates sequences of connect, accept,
 * send, recv (single and two concurrent), done and close, each interrupted
 * at a random point (before it starts, after a few scheduler yields, after a
 * few milliseconds), racing its own deadline, peer data, a peer FIN or a
 * peer abort. Thousands of operations, all on one listener and one pool.
 *
 * Per operation: the outcome is success, interruption, or one of the typed
 * errors the pair's history allows (never a defect, never another tag), and
 * the interrupt returns within 3 s. Per run: every successful receive, in
 * call order, returned exactly the next bytes of the peer's stream (an
 * abandoned receive consumed nothing, or poisoned the direction), and once
 * the run's sockets are gone every pool slot is back. Afterwards: no
 * descriptor is left open and the listener still accepts.
 *
 * Real sockets on loopback only.
 */
import { assert, describe, it } from "@effect/vitest"
import { Duration, Effect, Exit, Fiber, Schedule, Scope } from "effect"
import fc from "fast-check"
import { Deadline, TcpClient, TcpListener, TcpNode, TcpStorage } from "../../src/index.ts"
import type { TcpError, TcpSocket } from "../../src/index.ts"
import { checkFdLeaks, expectPoolIdle, openFds, pollUntil, statsWhen } from "../helpers.ts"
import { property, RUNS } from "./arbitraries.ts"
import { classify, KiB, type Outcome } from "./support.ts"

// ---------------------------------------------------------------- settings

/** Slot size: receives up to it are all-or-nothing, larger ones can stop halfway. */
const SLOT = 4 * KiB
const StormTcp = TcpNode.layerWith({ slots: 256, bufferSize: SLOT })
/** Short lingering closes keep the pool turning over between runs. */
const LINGER = { closeTimeout: "100 millis" } as const
const T2 = { timeout: "2 seconds", ...LINGER } as const

// ------------------------------------------------------------ the model

type Delay = { readonly yields: number } | { readonly ms: number }
/** -1: no deadline; else a timeout in ms (0: only what is possible at once). */
type Timeout = number

type Op =
  | {
    readonly op: "recv"
    readonly n: number
    readonly peerSends: number
    readonly sendAfter: Delay
    readonly timeout: Timeout
    readonly at: Delay
    readonly now: boolean
  }
  | {
    readonly op: "recv2"
    readonly n1: number
    readonly n2: number
    readonly peerSends: number
    readonly which: 0 | 1 | 2
    readonly at: Delay
  }
  | { readonly op: "send"; readonly size: number; readonly timeout: Timeout; readonly at: Delay; readonly now: boolean }
  | { readonly op: "done"; readonly at: Delay }
  | { readonly op: "close"; readonly peerFin: boolean; readonly timeout: Timeout; readonly at: Delay }
  | { readonly op: "peerFin" }
  | { readonly op: "peerAbort" }
  | { readonly op: "connect"; readonly at: Delay; readonly now: boolean }
  | { readonly op: "accept"; readonly withClient: boolean; readonly clientAfter: Delay; readonly at: Delay }

const delay: fc.Arbitrary<Delay> = fc.oneof(
  fc.record({ yields: fc.integer({ min: 0, max: 12 }) }),
  fc.record({ ms: fc.integer({ min: 0, max: 6 }) })
)
const timeout: fc.Arbitrary<Timeout> = fc.oneof(
  { arbitrary: fc.constant(-1), weight: 3 },
  { arbitrary: fc.integer({ min: 0, max: 8 }), weight: 1 }
)
const recvSize = fc.oneof(fc.integer({ min: 1, max: SLOT }), fc.integer({ min: SLOT + 1, max: 3 * SLOT }))
const sendSize = fc.oneof(fc.integer({ min: 1, max: 4 * KiB }), fc.integer({ min: 64 * KiB, max: 4 * 1024 * KiB }))

const op: fc.Arbitrary<Op> = fc.oneof(
  {
    weight: 6,
    arbitrary: fc.record({
      op: fc.constant("recv" as const),
      n: recvSize,
      peerSends: fc.integer({ min: 0, max: 3 * SLOT + 64 }),
      sendAfter: delay,
      timeout,
      at: delay,
      now: fc.boolean()
    })
  },
  {
    weight: 2,
    arbitrary: fc.record({
      op: fc.constant("recv2" as const),
      n1: recvSize,
      n2: recvSize,
      peerSends: fc.integer({ min: 0, max: 6 * SLOT }),
      which: fc.constantFrom(0 as const, 1 as const, 2 as const),
      at: delay
    })
  },
  {
    weight: 4,
    arbitrary: fc.record({ op: fc.constant("send" as const), size: sendSize, timeout, at: delay, now: fc.boolean() })
  },
  { weight: 1, arbitrary: fc.record({ op: fc.constant("done" as const), at: delay }) },
  {
    weight: 2,
    arbitrary: fc.record({ op: fc.constant("close" as const), peerFin: fc.boolean(), timeout, at: delay })
  },
  { weight: 1, arbitrary: fc.constant({ op: "peerFin" as const }) },
  { weight: 1, arbitrary: fc.constant({ op: "peerAbort" as const }) },
  { weight: 3, arbitrary: fc.record({ op: fc.constant("connect" as const), at: delay, now: fc.boolean() }) },
  {
    weight: 3,
    arbitrary: fc.record({ op: fc.constant("accept" as const), withClient: fc.boolean(), clientAfter: delay, at: delay })
  }
)

/** The byte at position `p` of the peer's stream: no short period, so a skip or a repeat shows. */
const streamByte = (p: number): number => (Math.imul(p + 1, 2654435761) >>> 24) & 0xff
const stream = (from: number, n: number): Uint8Array => Uint8Array.from({ length: n }, (_, i) => streamByte(from + i))

const wait = (d: Delay): Effect.Effect<void> =>
  "ms" in d
    ? Effect.sleep(Duration.millis(d.ms))
    : Effect.gen(function*() {
      for (let i = 0; i < d.yields; i++) yield* Effect.yieldNow
    })

const options = (t: Timeout) => (t === -1 ? { deadline: Deadline.never, ...LINGER } : { timeout: Duration.millis(t), ...LINGER })

// ------------------------------------------------------------ bookkeeping

interface Tally {
  operations: number
  interrupted: number
  completed: number
  errors: number
  byOp: Record<string, number>
  byTag: Record<string, number>
}

const tally: Tally = { operations: 0, interrupted: 0, completed: 0, errors: 0, byOp: {}, byTag: {} }

const count = (name: string, outcome: Outcome) => {
  tally.operations += 1
  tally.byOp[name] = (tally.byOp[name] ?? 0) + 1
  if (outcome.kind === "interrupted") tally.interrupted += 1
  else if (outcome.kind === "success") tally.completed += 1
  else if (outcome.kind === "error") {
    tally.errors += 1
    tally.byTag[outcome.tag] = (tally.byTag[outcome.tag] ?? 0) + 1
  }
}

/**
 * Forks `effect` (started at once or scheduled), waits `at`, interrupts it
 * and returns how it ended. An interrupt that does not return within 10 s
 * (a hang guard, not a measure) is a hang: the property fails.
 */
const interruptAfter = <A, E, R>(effect: Effect.Effect<A, E, R>, at: Delay, now = false) =>
  Effect.gen(function*() {
    const fiber = yield* Effect.forkChild(effect, { startImmediately: now })
    yield* wait(at)
    yield* Fiber.interrupt(fiber).pipe(
      Effect.timeoutOrElse({
        duration: "10 seconds",
        orElse: () => Effect.die(new Error("interrupting the operation did not complete within 10 s"))
      })
    )
    return yield* Fiber.await(fiber)
  })

/** Asserts that `outcome` is success, interruption, or an error in `allowed`. */
const expectAllowed = (label: string, outcome: Outcome, allowed: ReadonlyArray<string>, history: ReadonlyArray<string>) => {
  if (outcome.kind === "defect") assert.fail(`${label}: defect\n${outcome.cause}\nhistory: ${history.join(", ")}`)
  if (outcome.kind === "error") {
    assert.include(allowed, outcome.tag, `${label}: ${String(outcome.error)}\nhistory: ${history.join(", ")}`)
  }
}

interface Pair {
  readonly scope: Scope.Closeable
  readonly client: TcpSocket.TcpSocket
  readonly server: TcpSocket.TcpSocket
  /** Bytes of the stream the server has (tried to) send, and the client has received. */
  sent: number
  cursor: number
  peerFin: boolean
  peerAborted: boolean
  clientDone: boolean
  sendAbandoned: boolean
  largeRecvAbandoned: boolean
}

const portOf = (socket: TcpSocket.TcpSocket) => socket.localAddress?.port
const peerPortOf = (socket: TcpSocket.TcpSocket) => socket.remoteAddress?.port

/** Accepts until the connection from local port `port` turns up; other (stale) ones are aborted. */
const acceptFrom = (listener: TcpListener.TcpListener, port: number | undefined) =>
  Effect.gen(function*() {
    for (let i = 0; i < 64; i++) {
      const socket = yield* listener.accept(T2)
      if (peerPortOf(socket) === port) return socket
      yield* socket.abort
    }
    return assert.fail(`the connection from port ${String(port)} was never accepted`)
  })

/** Aborts every connection queued in the listener (stale ones from interrupted connects). */
const drain = (listener: TcpListener.TcpListener) =>
  Effect.gen(function*() {
    for (let i = 0; i < 256; i++) {
      const exit = yield* Effect.exit(Effect.scoped(Effect.flatMap(listener.accept({ deadline: 0 }), (s) => s.abort)))
      if (Exit.isFailure(exit)) return
    }
  })

/** A connected pair, in a scope of its own under `parent` (closed with it if the run fails). */
const makePair = (listener: TcpListener.TcpListener, parent: Scope.Scope) =>
  Effect.gen(function*() {
    const scope = yield* Scope.fork(parent)
    const client = yield* TcpClient.connect(`127.0.0.1:${listener.port}`, T2).pipe(Scope.provide(scope))
    const server = yield* acceptFrom(listener, portOf(client)).pipe(Scope.provide(scope))
    const pair: Pair = {
      scope,
      client,
      server,
      sent: 0,
      cursor: 0,
      peerFin: false,
      peerAborted: false,
      clientDone: false,
      sendAbandoned: false,
      largeRecvAbandoned: false
    }
    return pair
  })

const BIG = new Uint8Array(4 * 1024 * KiB)

/** The server sends `n` more bytes of its stream, after `after` (a peer that already finished sends nothing). */
const peerSend = (pair: Pair, n: number, after: Delay) =>
  Effect.gen(function*() {
    if (n === 0 || pair.peerFin || pair.peerAborted) return
    const bytes = stream(pair.sent, n)
    pair.sent += n
    yield* wait(after)
    // Bounded: a peer send the client's window cannot take fails TimedOut, which only ends the stream early.
    yield* Effect.ignore(pair.server.send(bytes, { timeout: "2 seconds" }))
  })

/** Checks a successful (or PeerClosed) receive against the stream and moves the cursor. */
const checkReceived = (pair: Pair, bytes: Uint8Array, label: string, history: ReadonlyArray<string>) => {
  const want = stream(pair.cursor, bytes.length)
  assert.isTrue(
    Buffer.from(bytes).equals(Buffer.from(want)),
    `${label}: received bytes ${pair.cursor}..${pair.cursor + bytes.length} do not match the stream (got ${Array.from(bytes.subarray(0, 8)).join(",")} want ${Array.from(want.subarray(0, 8)).join(",")})\nhistory: ${history.join(", ")}`
  )
  pair.cursor += bytes.length
}

const recvAllowed = (pair: Pair, finite: boolean): Array<string> => [
  ...(finite ? ["TimedOut"] : []),
  ...(pair.peerFin || pair.peerAborted ? ["PeerClosed"] : []),
  ...(pair.largeRecvAbandoned || pair.peerAborted ? ["ConnReset"] : [])
]

const sendAllowed = (pair: Pair, finite: boolean): Array<string> => [
  ...(finite ? ["TimedOut"] : []),
  ...(pair.clientDone || pair.peerAborted ? ["BrokenPipe"] : []),
  ...(pair.sendAbandoned || pair.peerAborted ? ["ConnReset"] : [])
]

/** The outcome of a receive: checks its bytes, and notes a receive larger than the slot that was abandoned. */
const settleRecv = (
  pair: Pair,
  n: number,
  exit: Exit.Exit<Uint8Array, TcpError.RecvError>,
  label: string,
  allowed: ReadonlyArray<string>,
  history: ReadonlyArray<string>
): Outcome => {
  const outcome = classify(exit)
  expectAllowed(label, outcome, allowed, history)
  if (Exit.isSuccess(exit)) {
    assert.strictEqual(exit.value.length, n, label)
    checkReceived(pair, exit.value, label, history)
  } else if (outcome.kind === "error" && outcome.tag === "PeerClosed") {
    const error = outcome.error as TcpError.PeerClosed
    checkReceived(pair, error.bytes, `${label} (PeerClosed)`, history)
  } else if (n > SLOT) {
    pair.largeRecvAbandoned = true
  }
  return outcome
}

// --------------------------------------------------------------- one run

/** The pool's stats once no slot is in use, or after 500 ms if some stay in use (a run that leaked). */
const settled = TcpStorage.stats.pipe(
  Effect.filterOrFail((s) => s.inUse === 0),
  Effect.retry({ schedule: Schedule.spaced("10 millis"), times: 50 }),
  Effect.catch(() => Effect.void),
  Effect.andThen(TcpStorage.stats)
)

const runOps = (listener: TcpListener.TcpListener, ops: ReadonlyArray<Op>) =>
  Effect.gen(function*() {
    const history: Array<string> = []
    // Baselines, so that one failing run (and fast-check's shrinking) is judged on its own,
    // taken once the previous run's background closes (LINGER) have ended.
    const slotsBefore = (yield* settled).inUse
    const fdsBefore = openFds()
    const runScope = yield* Effect.scope
    let pair = yield* makePair(listener, runScope)
    const address = `127.0.0.1:${listener.port}`
    for (const o of ops) {
      history.push(JSON.stringify(o))
      switch (o.op) {
        case "recv": {
          const sender = yield* Effect.forkChild(peerSend(pair, o.peerSends, o.sendAfter))
          const allowed = recvAllowed(pair, o.timeout !== -1)
          const exit = yield* interruptAfter(pair.client.recv(o.n, options(o.timeout)), o.at, o.now)
          count("recv", settleRecv(pair, o.n, exit, "recv", allowed, history))
          yield* Fiber.join(sender)
          break
        }
        case "recv2": {
          yield* peerSend(pair, o.peerSends, { yields: 0 })
          // Both queue on the socket in call order; one (or both) is interrupted,
          // the other is bounded by 150 ms.
          const allowed = [...recvAllowed(pair, true)]
          const first = pair.client.recv(o.n1, o.which === 1 ? { timeout: "150 millis" } : { deadline: -1 })
          const second = pair.client.recv(o.n2, o.which === 0 ? { timeout: "150 millis" } : { deadline: -1 })
          const f1 = yield* Effect.forkChild(first, { startImmediately: true })
          const f2 = yield* Effect.forkChild(second, { startImmediately: true })
          yield* wait(o.at)
          const stop = (f: Fiber.Fiber<Uint8Array, TcpError.RecvError>) =>
            Fiber.interrupt(f).pipe(
              Effect.timeoutOrElse({ duration: "10 seconds", orElse: () => Effect.die(new Error("interrupt hung")) })
            )
          if (o.which !== 1) yield* stop(f1)
          if (o.which !== 0) yield* stop(f2)
          const e1 = yield* Fiber.await(f1).pipe(Effect.timeoutOrElse({ duration: "10 seconds", orElse: () => Effect.die(new Error("recv hung")) }))
          // The first receive settles first: the second's bytes follow the first's.
          count("recv", settleRecv(pair, o.n1, e1, "recv2 first", allowed, history))
          const e2 = yield* Fiber.await(f2).pipe(Effect.timeoutOrElse({ duration: "10 seconds", orElse: () => Effect.die(new Error("recv hung")) }))
          count("recv", settleRecv(pair, o.n2, e2, "recv2 second", [...allowed, ...recvAllowed(pair, true)], history))
          break
        }
        case "send": {
          const allowed = sendAllowed(pair, o.timeout !== -1)
          const exit = yield* interruptAfter(pair.client.send(BIG.subarray(0, o.size), options(o.timeout)), o.at, o.now)
          const outcome = classify(exit)
          expectAllowed("send", outcome, allowed, history)
          if (outcome.kind !== "success") pair.sendAbandoned = true
          count("send", outcome)
          break
        }
        case "done": {
          const allowed = sendAllowed(pair, false)
          const exit = yield* interruptAfter(pair.client.done({ deadline: -1 }), o.at)
          const outcome = classify(exit)
          expectAllowed("done", outcome, allowed, history)
          // Whether or not it ran, later sends may see BrokenPipe; an abandoned FIN may leave ConnReset.
          pair.clientDone = true
          if (outcome.kind !== "success") pair.sendAbandoned = true
          count("done", outcome)
          break
        }
        case "close": {
          if (o.peerFin && !pair.peerAborted && !pair.peerFin) {
            yield* Effect.ignore(pair.server.done({ timeout: "1 second" }))
            pair.peerFin = true
          }
          const allowed = [
            ...(o.timeout !== -1 ? ["TimedOut"] : []),
            ...(pair.peerAborted ? ["ConnReset"] : [])
          ]
          const exit = yield* interruptAfter(pair.client.close(options(o.timeout)), o.at)
          const outcome = classify(exit)
          expectAllowed("close", outcome, allowed, history)
          count("close", outcome)
          // Whatever happened, this pair is done: a fresh one for what follows.
          yield* Scope.close(pair.scope, Exit.void)
          pair = yield* makePair(listener, runScope)
          break
        }
        case "peerFin": {
          if (!pair.peerFin && !pair.peerAborted) {
            yield* Effect.ignore(pair.server.done({ timeout: "1 second" }))
            pair.peerFin = true
          }
          break
        }
        case "peerAbort": {
          yield* pair.server.abort
          pair.peerAborted = true
          break
        }
        case "connect": {
          const exit = yield* interruptAfter(
            Effect.scoped(Effect.asVoid(TcpClient.connect(address, { deadline: -1, ...LINGER }))),
            o.at,
            o.now
          )
          const outcome = classify(exit)
          expectAllowed("connect", outcome, [], history)
          count("connect", outcome)
          break
        }
        case "accept": {
          const scope = yield* Scope.fork(runScope)
          const arriving = o.withClient
            ? yield* Effect.forkChild(
              Effect.andThen(wait(o.clientAfter), TcpClient.connect(address, T2).pipe(Scope.provide(scope)))
            )
            : undefined
          const exit = yield* interruptAfter(
            listener.accept({ deadline: -1, ...LINGER }).pipe(Scope.provide(scope)),
            o.at
          )
          const outcome = classify(exit)
          expectAllowed("accept", outcome, [], history)
          count("accept", outcome)
          if (arriving !== undefined) {
            // Nothing lost: the client's connection was taken by the interrupted
            // accept, or is still there for the next one.
            const client = yield* Fiber.join(arriving)
            const port = portOf(client)
            const takenAlready = Exit.isSuccess(exit) && peerPortOf(exit.value) === port
            if (!takenAlready) yield* acceptFrom(listener, port).pipe(Scope.provide(scope))
          }
          yield* Scope.close(scope, Exit.void)
          break
        }
      }
    }
    yield* Scope.close(pair.scope, Exit.void)
    // Connections of interrupted connects that completed in the kernel anyway reach the
    // listener's queue in later I/O turns: drain it until every descriptor is back (polled, bounded).
    yield* pollUntil(Effect.andThen(drain(listener), Effect.sync(() => openFds() <= fdsBefore)))
    const stats = yield* statsWhen((s) => s.inUse <= slotsBefore && s.waiting === 0)
    assert.strictEqual(stats.inUse - slotsBefore, 0, `slots held after the run: ${JSON.stringify(stats)}\nhistory: ${history.join(", ")}`)
    assert.isAtMost(openFds() - fdsBefore, 0, `descriptors held after the run\nhistory: ${history.join(", ")}`)
  })

// ------------------------------------------------------------------- test

describe("faults: interruption storm", () => {
  checkFdLeaks()

  it.live("connect, accept, send, recv, done and close interrupted at random points: nothing leaks", () =>
    Effect.gen(function*() {
      const fdsBefore = openFds()
      const listener = yield* TcpListener.listen("127.0.0.1:0")
      const started = Date.now()
      yield* property(fc.array(op, { minLength: 10, maxLength: 40 }), RUNS, (ops) =>
        Effect.scoped(runOps(listener, ops)).pipe(
          Effect.timeoutOrElse({
            duration: "30 seconds",
            orElse: () => Effect.die(new Error("a run did not finish within 30 s"))
          })
        ))
      const elapsed = Date.now() - started

      // Afterwards: no slot held, nobody waiting, no descriptor left, and the listener still accepts.
      yield* pollUntil(Effect.andThen(drain(listener), Effect.sync(() => openFds() <= fdsBefore + 1)))
      yield* expectPoolIdle
      // + 1: the listener itself.
      const leaked = openFds() - (fdsBefore + 1)
      assert.isAtMost(leaked, 0, "descriptors leaked by the storm")
      yield* Effect.scoped(Effect.gen(function*() {
        const client = yield* TcpClient.connect(`127.0.0.1:${listener.port}`, T2)
        const server = yield* acceptFrom(listener, portOf(client))
        yield* client.send(stream(0, 100), T2)
        assert.deepStrictEqual(yield* server.recv(100, T2), stream(0, 100))
      }))
      yield* expectPoolIdle
      const stats = yield* TcpStorage.stats
      console.log(
        `[faults/interrupt] ${tally.operations} operations in ${RUNS} runs (${elapsed} ms): ` +
          `${tally.interrupted} interrupted, ${tally.completed} completed first, ${tally.errors} typed errors ` +
          `${JSON.stringify(tally.byTag)}; by operation ${JSON.stringify(tally.byOp)}; ` +
          `descriptors leaked ${Math.max(0, leaked)}, slots in use ${stats.inUse} (high water ${stats.highWater})`
      )
      assert.isAtLeast(tally.operations, Math.min(2000, RUNS * 10), "thousands of operations")
      assert.isAtLeast(tally.interrupted, tally.operations / 10, "interruptions land in flight")
      yield* expectPoolIdle
    }).pipe(Effect.scoped, Effect.provide(StormTcp)), 120_000)
})

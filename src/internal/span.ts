import { Effect } from "effect"

/**
 * `body` as a traced data call: every call runs in a span named `name`, a
 * child of the caller's span, ended with the call's exit, as `Effect.fn`
 * would record it.
 *
 * `Effect.fn` also makes its span the parent of the body's effects and
 * records the call site, which costs two context updates and a stack
 * capture per call: in Effect 4.1 about 4.5 µs and 4.1 KiB, against 1 µs
 * and 1.3 KiB for the span alone. A send or a receive starts no spans of
 * its own and fails with a tagged error that names its syscall, so a leaf
 * span (`Effect.useSpan`) records the same trace.
 */
export const leafSpan = <Args extends ReadonlyArray<unknown>, A, E>(
  name: string,
  body: (...args: Args) => Effect.Effect<A, E>
): (...args: Args) => Effect.Effect<A, E> =>
(...args) => Effect.useSpan(name, () => body(...args))

/**
 * Bytes `[from, until)` of `chunks` taken as one sequence, copied into one
 * array: what a read gathered (`PeerClosed.bytes`), or the part of a send
 * the kernel did not take at once.
 */
export const gather = (
  chunks: ReadonlyArray<Uint8Array>,
  until: number,
  from = 0,
  into: Uint8Array = new Uint8Array(until - from)
): Uint8Array => {
  const bytes = into.length === until - from ? into : into.subarray(0, until - from)
  let position = 0
  for (const chunk of chunks) {
    if (position >= until) break
    const start = Math.max(from - position, 0)
    const end = Math.min(chunk.length, until - position)
    if (start < end) bytes.set(chunk.subarray(start, end), position + start - from)
    position += chunk.length
  }
  return bytes
}

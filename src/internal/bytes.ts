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

export const isBytes = (u: unknown): u is Uint8Array => u instanceof Uint8Array

/** The byte count of an array of byte arrays, or `undefined` when `parts` is not one. */
export const totalOf = (parts: unknown): number | undefined => {
  if (!Array.isArray(parts)) return undefined
  let total = 0
  for (const part of parts) {
    if (!isBytes(part)) return undefined
    total += part.length
  }
  return total
}

const utf8 = new TextEncoder()

// A loop reading lines asks for the same delimiter each call: encode it once. Frames only read it.
let lastText: string | undefined
let lastBytes = new Uint8Array(0)
const encoded = (text: string): Uint8Array => {
  if (text !== lastText) {
    lastBytes = utf8.encode(text)
    lastText = text
  }
  return lastBytes
}

/**
 * A delimiter as bytes (a string as UTF-8, bytes copied so the caller may
 * reuse them), or why it cannot be one: it must not be empty, and the
 * search runs in the storage slot, so it must fit in `slotSize`.
 */
export const delimiterOf = (delimiter: unknown, slotSize: number): Uint8Array | string => {
  const bytes = typeof delimiter === "string" ? encoded(delimiter) : isBytes(delimiter) ? delimiter.slice() : undefined
  if (bytes === undefined || bytes.length === 0) return "delimiter must be a non-empty Uint8Array or string"
  if (bytes.length > slotSize) return `delimiter longer than the storage slot (${slotSize} bytes)`
  return bytes
}

/** A message bound (`max`): `fallback` when left out, else an integer in 1..`limit`; or why it is not one. */
export const maxOf = (max: unknown, fallback: number, limit: number): number | string =>
  max === undefined ? fallback : typeof max === "number" && Number.isSafeInteger(max) && max >= 1 && max <= limit
  ? max
  : `max must be an integer in 1..${limit}`

/** The first `filled` bytes spread over `targets`, copied into one array (for `PeerClosed.bytes`). */
export const gather = (targets: ReadonlyArray<Uint8Array>, filled: number): Uint8Array => {
  const bytes = new Uint8Array(filled)
  let offset = 0
  for (const target of targets) {
    if (offset === filled) break
    const n = Math.min(target.length, filled - offset)
    bytes.set(target.subarray(0, n), offset)
    offset += n
  }
  return bytes
}

/**
 * A connection's inbound bytes, kept in its storage slot as a ring: the
 * `count` unconsumed bytes start at `start` and wrap at the buffer's end,
 * and the transport's next read goes to `region`, the free bytes after
 * them. When the ring is full, reading pauses (the kernel's window closes
 * on the peer) until receives have consumed the region the transport will
 * read into next, so the region after a pause is chosen once, when reading
 * stops. Nothing is allocated per read, and a receive copies straight from
 * the slot into the caller's memory.
 */
export class Ring {
  private readonly buffer: Uint8Array
  private start = 0
  /** Unconsumed bytes. */
  count = 0
  /** Where the transport reads next. */
  region: Uint8Array
  /** Reading stopped because the ring was full. */
  paused = false
  /** Bytes consumed since reading paused: reading may resume once they cover `region`. */
  private consumedSincePause = 0

  constructor(buffer: Uint8Array) {
    this.buffer = buffer
    this.region = buffer
  }

  get size(): number {
    return this.buffer.length
  }

  /** `n` bytes landed in `region`; `nextRegion` must follow once receives had their turn. */
  received(n: number): void {
    this.count += n
  }

  /** After a read: moves `region` on. Returns whether reading goes on. */
  nextRegion(): boolean {
    // The previous region is used up: the ring may move back to the front.
    if (this.count === 0) this.start = 0
    this.chooseRegion()
    return !this.paused
  }

  /**
   * Picks where the transport reads next: the free bytes right after the
   * unconsumed ones, up to the buffer's end or the ring's start. A full
   * ring pauses reading; its region is then the oldest quarter (up to the
   * buffer's end), free once receives consumed that much.
   */
  private chooseRegion(): void {
    const size = this.buffer.length
    const tail = this.start + this.count
    if (this.count === size) {
      this.paused = true
      this.consumedSincePause = 0
      this.region = this.buffer.subarray(this.start, Math.min(size, this.start + Math.max(1, size >>> 2)))
    } else {
      this.region = tail < size ? this.buffer.subarray(tail) : this.buffer.subarray(tail - size, this.start)
    }
  }

  /** Drops `n` bytes from the front. Returns whether reading, paused, may resume now. */
  consume(n: number): boolean {
    this.start = (this.start + n) % this.buffer.length
    this.count -= n
    if (!this.paused) return false
    this.consumedSincePause += n
    if (this.consumedSincePause < this.region.length) return false
    this.paused = false
    return true
  }

  /**
   * Copies the first `n` bytes into `targets` (in order, starting `skip`
   * bytes into them) and consumes them. Returns whether reading may resume.
   */
  copyOut(targets: ReadonlyArray<Uint8Array>, skip: number, n: number): boolean {
    let offset = skip
    let from = this.start
    let left = n
    for (const target of targets) {
      if (left === 0) break
      if (offset >= target.length) {
        offset -= target.length
        continue
      }
      const take = Math.min(target.length - offset, left)
      this.copyAt(from, take, target, offset)
      from = (from + take) % this.buffer.length
      left -= take
      offset = 0
    }
    return this.consume(n)
  }

  /**
   * Where `needle` first starts among the unconsumed bytes, searching from
   * byte `from` on (across the wrap); `-1` when it is not there (yet).
   */
  indexOf(needle: Uint8Array, from: number): number {
    const size = this.buffer.length
    const first = needle[0]
    if (first === undefined) return -1
    const last = this.count - needle.length
    let at = from
    while (at <= last) {
      // The first byte by the engine's own scan, within the contiguous run that holds `at`.
      const position = (this.start + at) % size
      const runEnd = Math.min(size, position + (last - at) + 1)
      const hit = this.buffer.indexOf(first, position)
      if (hit === -1 || hit >= runEnd) {
        at += runEnd - position
        continue
      }
      at += hit - position
      if (this.matches(needle, at)) return at
      at += 1
    }
    return -1
  }

  private matches(needle: Uint8Array, at: number): boolean {
    const size = this.buffer.length
    for (let i = 1; i < needle.length; i++) {
      if (this.buffer[(this.start + at + i) % size] !== needle[i]) return false
    }
    return true
  }

  /** Copies `n` ring bytes from the front into `target` at `offset`, without consuming them. */
  peek(n: number, target: Uint8Array, offset: number): void {
    this.copyAt(this.start, n, target, offset)
  }

  /** Copies `n` ring bytes from `from` into `target` at `offset`, across the wrap. */
  private copyAt(from: number, n: number, target: Uint8Array, offset: number): void {
    const first = Math.min(n, this.buffer.length - from)
    target.set(this.buffer.subarray(from, from + first), offset)
    if (first < n) target.set(this.buffer.subarray(0, n - first), offset + first)
  }
}

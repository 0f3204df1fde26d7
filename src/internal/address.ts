import { Array as Arr, Effect, Result } from "effect"
import { readFile, readlink } from "node:fs/promises"
import { AddressResolver, Host, NetAddress } from "effect/net"
import type { Deadline } from "../Deadline.ts"
import * as TcpError from "../TcpError.ts"
import { bounded } from "./wait.ts"

/** `"host:port"`, `"[v6]:port"`, `{ host, port }` or a resolved `InetAddress`. */
export type TcpAddress = string | { readonly host: string; readonly port: number } | NetAddress.InetAddress

/** Which address families a name may resolve to. */
export type Family = "ipv4" | "ipv6" | "any"

type Endpoint = NetAddress.InetAddress | Host.HostPort

/** A name for any value given as an address, for messages: never throws. */
export const describe = (address: unknown): string => {
  if (typeof address === "string") return address
  if (NetAddress.isInetAddress(address)) return NetAddress.formatInet(address)
  try {
    return JSON.stringify(address) ?? String(address)
  } catch {
    // A value whose own toString is not callable (or throws) still gets a name.
    try {
      return String(address)
    } catch {
      return Object.prototype.toString.call(address)
    }
  }
}

const endpointFrom = (address: unknown): Result.Result<Endpoint, NetAddress.NetAddressError> => {
  const invalid = () => Result.fail(new NetAddress.NetAddressError({ input: address, message: "expected host:port" }))
  if (NetAddress.isInetAddress(address)) return Result.succeed(address)
  if (typeof address !== "string" && (typeof address !== "object" || address === null)) return invalid()
  try {
    return Host.hostPortFromInput(address as Host.HostPortInput)
  } catch {
    // Effect's parser can throw on values no type allows (a Symbol host, say): still just invalid.
    return invalid()
  }
}

/**
 * Checks an address without resolving it. Port `0` means "pick one" and is
 * only allowed where `portZero` says so (listen).
 */
export const parse = (
  address: TcpAddress,
  syscall: string,
  portZero: boolean
): Result.Result<Endpoint, TcpError.InvalidArgument> => {
  const text = describe(address)
  const endpoint = endpointFrom(address)
  if (Result.isFailure(endpoint)) {
    // Effect's parser words port errors its own way: every bad port reads the same here.
    const message = endpoint.failure.message.startsWith("port ") ? portRange("port", portZero) : endpoint.failure.message
    return Result.fail(TcpError.invalid(syscall, message, text))
  }
  if (endpoint.success.port === 0 && !portZero) return Result.fail(TcpError.invalid(syscall, portRange("port", false), text))
  return Result.succeed(endpoint.success)
}

/**
 * A connect's address, checked, with what every connect to it needs: its
 * text (messages, spans), the host name TLS checks, and, for an IP literal,
 * the one socket address with the text and host Node is given for it.
 */
export interface Destination {
  readonly endpoint: Endpoint
  readonly text: string
  readonly hostName: string
  readonly literal: Literal | undefined
}

/** An IP literal as a connect uses it. */
export interface Literal {
  readonly targets: Arr.NonEmptyReadonlyArray<NetAddress.InetAddress>
  /** `NetAddress.formatInet` of the address. */
  readonly text: string
  /** `nodeHost` of the address. */
  readonly host: string
}

/** Destinations given as strings, by string: parsing and formatting them cost more than the rest of a connect's checks. */
const destinations = new Map<string, Result.Result<Destination, never>>()
/** Enough for every peer a process talks to; a process that names more starts the cache over. */
const DESTINATIONS_MAX = 1024

const destinationOf = (endpoint: Endpoint): Destination => {
  const inet = NetAddress.isInetAddress(endpoint)
  const address = inet
    ? endpoint
    : NetAddress.isIpAddress(endpoint.host)
    ? NetAddress.inetAddressUnsafe(endpoint.host, endpoint.port)
    : undefined
  return {
    endpoint,
    text: inet ? NetAddress.formatInet(endpoint) : Host.formatHostPort(endpoint),
    hostName: inet ? nodeHost(endpoint) : Host.formatHost(endpoint.host),
    literal: address === undefined
      ? undefined
      : { targets: Arr.of(address), text: NetAddress.formatInet(address), host: nodeHost(address) }
  }
}

/**
 * `parse` for a connect (port `0` refused), with the texts it needs. A
 * string seen before is not parsed again: its destination is immutable.
 */
export const destination = (address: TcpAddress, syscall: string): Result.Result<Destination, TcpError.InvalidArgument> => {
  if (typeof address !== "string") return Result.map(parse(address, syscall, false), destinationOf)
  const known = destinations.get(address)
  if (known !== undefined) return known
  const parsed = parse(address, syscall, false)
  if (Result.isFailure(parsed)) return Result.fail(parsed.failure)
  if (destinations.size >= DESTINATIONS_MAX) destinations.clear()
  const checked = Result.succeed(destinationOf(parsed.success))
  destinations.set(address, checked)
  return checked
}

/** The one wording of a bad port: `0` is allowed where it means "pick one" (listen, a local port). */
export const portRange = (name: string, zeroAllowed: boolean): string =>
  `${name} must be an integer from ${zeroAllowed ? 0 : 1} through 65535`

const ipFamily = (family: Family): NetAddress.IpFamily | undefined =>
  family === "ipv4" ? "IPv4" : family === "ipv6" ? "IPv6" : undefined

/**
 * Turns an endpoint into socket addresses. Literals skip the resolver; names
 * go through it within the deadline, and a name that does not resolve is
 * `AddrNotAvail`.
 */
export const resolve = (
  endpoint: Endpoint,
  resolver: AddressResolver.AddressResolver["Service"],
  family: Family,
  deadline: Deadline,
  syscall: string
): Effect.Effect<Arr.NonEmptyReadonlyArray<NetAddress.InetAddress>, TcpError.TimedOut | TcpError.AddrNotAvail> => {
  const text = NetAddress.isInetAddress(endpoint) ? NetAddress.formatInet(endpoint) : Host.formatHostPort(endpoint)
  const wanted = ipFamily(family)
  const literal = NetAddress.isInetAddress(endpoint)
    ? endpoint
    : NetAddress.isIpAddress(endpoint.host)
    ? NetAddress.inetAddressUnsafe(endpoint.host, endpoint.port)
    : undefined
  if (literal !== undefined) {
    return wanted === undefined || NetAddress.isFamily(literal, wanted)
      ? Effect.succeed(Arr.of(literal))
      : Effect.fail(notAvailable(syscall, text, `not an ${wanted} address`))
  }
  const lookup = resolver.resolve(endpoint, { family: wanted }).pipe(
    Effect.mapError((error) => notAvailable(syscall, text, error.message))
  )
  return bounded(lookup, deadline, () => TcpError.timedOut(syscall, text))
}

const notAvailable = (syscall: string, address: string, detail: string) =>
  TcpError.make(TcpError.AddrNotAvail, "EADDRNOTAVAIL", syscall, address, `cannot resolve: ${detail}`)

/** The `host` string Node's `net` wants for an address. */
export const nodeHost = (address: NetAddress.InetAddress): string => NetAddress.formatHost(address)

/** An address Node reported for a connected socket. */
export const fromNode = (host: string | undefined, port: number | undefined): NetAddress.InetAddress | undefined => {
  if (host === undefined || port === undefined) return undefined
  const parsed = NetAddress.inetAddressFromIpString(host.replace(/%.*$/, ""), port)
  return Result.isSuccess(parsed) ? parsed.success : undefined
}

/**
 * Whether descriptor `fd` is a TCP socket, checked before Node takes it over
 * (taking it over and then refusing it would close the caller's descriptor).
 * Linux answers through /proc: the socket's inode is listed in the TCP
 * tables. Elsewhere the answer is "unknown" (`undefined`).
 */
export const isTcpDescriptor = (fd: number): Effect.Effect<boolean | undefined> =>
  process.platform !== "linux" ? Effect.succeed(undefined) : Effect.promise(() => scanTcpTables(fd))

/** The kernel's TCP tables list every TCP socket's inode: read without blocking the event loop. */
const scanTcpTables = async (fd: number): Promise<boolean | undefined> => {
  try {
    const inode = /^socket:\[(\d+)\]$/.exec(await readlink(`/proc/self/fd/${fd}`))?.[1]
    if (inode === undefined) return false
    for (const table of ["/proc/net/tcp", "/proc/net/tcp6"]) {
      const rows = await readFile(table, "latin1")
      if (rows.split("\n").some((row) => row.trim().split(/\s+/)[9] === inode)) return true
    }
    return false
  } catch {
    return undefined
  }
}

/** `host:port` (`[v6]:port`), or `undefined` when either is unknown. */
export const hostPort = (host: string | undefined, port: number | undefined): string | undefined =>
  host === undefined || port === undefined ? undefined : host.includes(":") ? `[${host}]:${port}` : `${host}:${port}`

/** `host:port` (`[v6]:port`) of a Node socket's peer, or `undefined` when Node cannot tell. */
export const peerOf = (
  socket: { readonly remoteAddress?: string | undefined; readonly remotePort?: number | undefined }
): string | undefined => hostPort(socket.remoteAddress, socket.remotePort)

import { EventEmitter } from 'node:events'

/** Stable codes carried by every error relock rejects or throws with (`error.code`). */
export type RelockErrorCode =
  | 'ERR_RELOCK_INVALID_ARGUMENT'
  | 'ERR_RELOCK_INVALID_URL'
  | 'ERR_RELOCK_CONNECTION'
  | 'ERR_RELOCK_TIMEOUT'
  | 'ERR_RELOCK_AUTH'
  | 'ERR_RELOCK_REDIS'
  | 'ERR_RELOCK_CLOSED'
  | 'ERR_RELOCK_NO_QUORUM'
  | 'ERR_RELOCK_VALIDITY_EXPIRED'
  | 'ERR_RELOCK_WAIT_TIMEOUT'
  | 'ERR_RELOCK_LOCK_LOST'
  | 'ERR_RELOCK_UNSUPPORTED'
  | 'ERR_RELOCK_REPLICATION'
  | 'ERR_RELOCK_UPGRADE_REFUSED'
  | 'ERR_RELOCK_INTERNAL'
  | 'ABORT_ERR'

/** The error type of relock. `name` is `'AbortError'` for `ABORT_ERR`, else `'RelockError'`. */
export declare class RelockError extends Error {
  readonly code: RelockErrorCode
}

/** Retry settings of `lock`; all durations in milliseconds. */
export interface RetryOptions {
  /** Further attempts after the first when the key is busy or a quorum failed. Default 0. */
  retryCount?: number
  /** Pause between attempts. Default 100. */
  retryDelay?: number
  /** Upper bound of a random extra pause added to each `retryDelay`. Default 100. */
  retryJitter?: number
  /** Time budget for all attempts of one call; no new attempt starts past it. Default: none. */
  retryTimeout?: number
}

/** TLS settings for `rediss://` hosts. Certificates and keys are PEM, as strings or Buffers. */
export interface TlsOptions {
  /** Trust this CA instead of the system's trust store. */
  ca?: string | Buffer
  /** Client certificate, for servers that require one (`tls-auth-clients yes`); needs `key`. */
  cert?: string | Buffer
  /** The client certificate's private key. */
  key?: string | Buffer
  /** Accept any server certificate and host name. The connection can then be intercepted; a warning is emitted. */
  dangerouslyAcceptAnyCertificate?: boolean
}

/** Client settings; all durations in milliseconds. */
/** Where relock's log lines go: any of the four methods, each called with one line. */
export interface RelockLogger {
  debug?(line: string): void
  info?(line: string): void
  warn?(line: string): void
  error?(line: string): void
}

export interface RedlockOptions extends RetryOptions {
  /** Bound on connecting to one host. Default 2000. */
  connectTimeout?: number
  /** Bound on one Redis round trip. Default 1000. */
  commandTimeout?: number
  /** Share of the ttl set aside for clock drift between hosts: validity = ttl − elapsed − (ttl × driftFactor + 2). Default 0.01. */
  driftFactor?: number
  /** ACL user name for every host; takes precedence over one in the URLs. */
  username?: string
  /** Password for every host; takes precedence over one in the URLs. */
  password?: string
  /** Certificates for `rediss://` hosts. */
  tls?: TlsOptions
  /** Wait (`WAIT`) until replicas of each host copied every new lock before relying on it. */
  replicaAck?: ReplicaAckOptions
  /** Find the master through Redis Sentinel: the URLs are then the Sentinels' addresses. */
  sentinel?: { name: string }
  /**
   * Put before every key relock writes (lock keys, fence counters, queues, channels), so that
   * several applications share one Redis without meeting; keys in the API never include it.
   */
  prefix?: string
  /**
   * Told what the client does that callers do not see: connections lost and regained, retries,
   * failovers, failed renewals, lost locks. `console`, pino and winston fit. Without it,
   * `DEBUG=relock` logs to stderr.
   */
  logger?: RelockLogger
  /**
   * OpenTelemetry metrics: wait and hold histograms, held and waiting gauges, lost locks.
   * `meter` defaults to the global one of `@opentelemetry/api` (an optional peer dependency);
   * `keyGroup` maps a key to a bounded label value (never label by the key itself). A `keyGroup`
   * or meter that throws loses that data point, as a process warning, never a lock call.
   */
  metrics?: { meter?: unknown; keyGroup?: (key: string) => string }
  /** The URLs are seed nodes of one Redis Cluster. Default false. */
  cluster?: boolean
}

/** Failover safety for masters with replicas. */
export interface ReplicaAckOptions {
  /** Replicas of each host that must have the lock. */
  replicas: number
  /** Longest wait for them, in ms; must be shorter than `commandTimeout`. Default 100. */
  timeout?: number
  /** `'fail'`: release the lock and reject with `ERR_RELOCK_REPLICATION`; `'warn'`: keep it and emit `replication`; `'off'`. Default `'fail'`. */
  policy?: 'fail' | 'warn' | 'off'
}

/** A lock and how long it is safe to rely on. */
export interface LockWithValidity {
  token: string
  /** Milliseconds left on the lock (ttl less elapsed time and drift margin) when the answer was made. */
  validity: number
}

/** Settings of a blocking `acquire`; all durations in milliseconds. */
export interface AcquireOptions {
  /** Lease. The native watchdog keeps renewing it while the lock is held. Default 30000. */
  ttl?: number
  /** How long to wait for the lock; `Infinity` waits without limit. Default 10000. */
  waitTimeout?: number
  /** First come, first served among the waiters of all processes (one Redis host only). Default false. */
  fair?: boolean
  /** Stop waiting when this signal aborts (rejects with an `AbortError`, code `ABORT_ERR`). */
  signal?: AbortSignal
  /** Renew the lease from the native core every ttl/3 while held. Default true. */
  watchdog?: boolean
  /** Cap on the total hold time: renewal stops after it and the lock expires. Default: none. */
  maxHold?: number
  /** Called once if the lock is lost (code `ERR_RELOCK_LOCK_LOST`), also when it is `release()` that finds it lost; not when the client closes. */
  onLost?: (reason: RelockError) => void
}

/** A held lock, renewed by the native watchdog until released. */
export declare class Lock {
  /** Handles come from `acquire`, `rwlock(…)` and `semaphore(…)`; not made directly. */
  protected constructor()
  readonly key: string
  readonly token: string
  /** Fencing number: strictly greater than every fence handed out before for this key. */
  readonly fence: number
  /** The keys held: `[key]`, or every key of a multi-key lock in the order given. */
  readonly keys: string[]
  /** One fencing number per key of `keys`. */
  readonly fences: number[]
  /** Aborts, with a `RelockError` as its reason, when the lock is lost. */
  readonly signal: AbortSignal
  /** True while held and within its lease; answered from native state, without a round trip. */
  isValid(): boolean
  /** Milliseconds left on the lease; 0 once released or lost. */
  remainingMs(): number
  /** Renews the lease to `ttl` ms now; later renewals use the new ttl. */
  extend(ttl: number): Promise<void>
  /** Releases the lock: true if this call released it, false if it was released before; rejects with `ERR_RELOCK_LOCK_LOST` if it had been lost (the key is still deleted wherever it holds the lock's token). */
  release(): Promise<boolean>
  [Symbol.asyncDispose](): Promise<void>
}

/** A read or write hold of a read-write lock. */
export declare class ReadWriteHandle extends Lock {
  private constructor()
  readonly mode: 'read' | 'write'
  /** Turns the write hold into a read hold in one step: no writer can come in between. */
  downgrade(): Promise<void>
  /**
   * Turns the read hold into the write hold, only when this is the only reader (else rejects
   * with `ERR_RELOCK_UPGRADE_REFUSED`, naming how many others read). The handle gets a new fence.
   */
  upgrade(): Promise<void>
}

/** Many readers or one writer on one key (one Redis host, Sentinel or Cluster). */
export declare class ReadWriteLock {
  private constructor()
  readonly key: string
  /** Waits for a read hold. Readers share; once a writer waits, new readers wait behind it. */
  read(options?: AcquireOptions): Promise<ReadWriteHandle>
  /** Waits for the write hold, alone. Its fence continues the key's fence sequence. */
  write(options?: AcquireOptions): Promise<ReadWriteHandle>
  usingRead<T>(fn: (lock: ReadWriteHandle) => T | Promise<T>): Promise<T>
  usingRead<T>(options: AcquireOptions | undefined, fn: (lock: ReadWriteHandle) => T | Promise<T>): Promise<T>
  usingWrite<T>(fn: (lock: ReadWriteHandle) => T | Promise<T>): Promise<T>
  usingWrite<T>(options: AcquireOptions | undefined, fn: (lock: ReadWriteHandle) => T | Promise<T>): Promise<T>
  /** Writer, readers and waiters now (lists cut at 1000; counts exact). */
  state(): Promise<ReadWriteState>
}

export interface ReadWriteState {
  writer: string | null
  writerTtl: number | null
  readers: Array<{ token: string; ttl: number }>
  readerCount: number
  waitingWriters: number
  queue: Array<{ mode: 'read' | 'write'; token: string }>
  queueLength: number
  fence: number
}

/** Settings of a semaphore's `acquire`. */
export interface PermitsOptions extends AcquireOptions {
  /** Permits to take. Default 1. */
  permits?: number
}

/** Permits of a semaphore held through a handle. */
export declare class PermitHandle extends Lock {
  private constructor()
  readonly permits: number
}

/** Up to `permits` permits in use at once (one Redis host, Sentinel or Cluster). */
export declare class Semaphore {
  private constructor()
  readonly key: string
  readonly permits: number
  /** Waits for `options.permits` (default 1) permits. With `fair: true`, strictly in arrival order. */
  acquire(options?: PermitsOptions): Promise<PermitHandle>
  using<T>(fn: (permits: PermitHandle) => T | Promise<T>): Promise<T>
  using<T>(options: PermitsOptions | undefined, fn: (permits: PermitHandle) => T | Promise<T>): Promise<T>
  /** Permits free now. */
  available(): Promise<number>
  /** Permits in use, holders and fair waiters now (lists cut at 1000; counts exact). */
  state(): Promise<SemaphoreState>
}

export interface SemaphoreState {
  inUse: number
  holders: Array<{ token: string; permits: number; ttl: number }>
  queue: string[]
  holderCount: number
  queueLength: number
  fence: number
}

/** Counters of what a client's locks did since it was created. */
export interface LockStats {
  /** `lock` calls that took their key. */
  locked: number
  /** `lock` calls that found their key held. */
  busy: number
  /** `unlock` calls that released a lock. */
  unlocked: number
  /** `acquire` calls that got their lock. */
  acquired: number
  /** Locks released through their handle. */
  released: number
  /** Renewals by the watchdog. */
  renewed: number
  /** Held locks that were lost. */
  lost: number
  /** `acquire` calls that ran out of `waitTimeout`. */
  waitTimedOut: number
  /** `acquire` calls aborted through their signal. */
  aborted: number
  /** Calls that failed for another reason (hosts down, no quorum, …). */
  failed: number
  /** Held locks released, and calls and waits ended, by `close()` (not counted as lost or failed). */
  closed: number
}

/** The state of one lock on one host, as `inspect` reports it. */
export interface LockInfo {
  host: string
  /** The holder's token, or null when the lock is free. */
  holder: string | null
  /** Remaining ttl in ms, or null. */
  ttl: number | null
  /** The last fencing number handed out for the key, or null. */
  fence: number | null
  /** Fair waiters in queue order. */
  waiters: Array<{ token: string; expiresIn: number | null; ttl: number | null }>
  /**
   * True when the key holds something other than a relock lock (application data, or another
   * client's lock): `holder` is then null, and `forceRelease` refuses the key.
   */
  foreign: boolean
  /** True when the key is a relock semaphore: `holder` is null; its holders are in `semaphore(key, …).state()`. `forceRelease` refuses it. */
  semaphore: boolean
  /** How many readers hold `key` as a read-write lock (they are in `rwlock(key).state()`); 0 otherwise. */
  readers: number
  /** Why this host could not be asked, or null; its other fields are empty then. */
  error: RelockError | null
}

/** The keys `list` found; `failedHosts` names the hosts that could not be asked. */
export type LockListing = string[] & { readonly failedHosts: ReadonlyArray<{ host: string; error: RelockError }> }

/** The events a client emits, with what each carries. */
export interface RedlockEvents {
  acquired: [{ key: string; fence: number; waitedMs: number }]
  /** `closed`: released by `close()` rather than through the handle. */
  released: [{ key: string; fence: number; heldMs: number; closed: boolean }]
  extended: [{ key: string; fence: number; ttl: number }]
  lost: [{ key: string; fence: number; error: RelockError }]
  timeout: [{ key: string; waitedMs: number }]
  /** A lock was copied to fewer replicas than `replicaAck` asks, under the `'warn'` policy. */
  replication: [{ error: RelockError }]
}

/** A lock client; an `EventEmitter` of the events in `RedlockEvents`. */
export declare class Redlock extends EventEmitter {
  /**
   * @param urls One Redis URL (`redis://[user:password@]host:port[/db]`, `rediss://…`,
   *   `unix:///path/to.sock`, `redis+unix:///path/to.sock`), or several independent Redis
   *   masters, which makes every call follow the Redlock algorithm.
   */
  constructor(urls: string | readonly string[], options?: RedlockOptions)
  /** The hosts, by address, without credentials. */
  readonly hosts: string[]
  readonly closed: boolean
  /** One attempt (more with `retryCount`) to take `key` for `ttl` ms. Resolves to the token, or null if someone else holds it. */
  lock(key: string, ttl: number, options?: RetryOptions): Promise<string | null>
  /** One attempt to take every one of `keys` for `ttl` ms, or none: the token, or null if any is held. One Redis host, Sentinel or Cluster. */
  lock(keys: readonly string[], ttl: number): Promise<string | null>
  /** As `lock`, and also tells how long the lock is safe to rely on. */
  lockWithValidity(key: string, ttl: number, options?: RetryOptions): Promise<LockWithValidity | null>
  /** Renews the lock to `ttl` ms if `token` still holds it. */
  extend(key: string, token: string, ttl: number): Promise<boolean>
  /** Releases the lock if `token` holds it. */
  unlock(key: string, token: string): Promise<boolean>
  /** Releases every one of `keys` that `token` holds: true if it held all of them. */
  unlock(keys: readonly string[], token: string): Promise<boolean>
  /** Waits until `key` is free and takes it; the native watchdog renews it while held. */
  acquire(key: string, options?: AcquireOptions): Promise<Lock>
  /**
   * Waits until every one of `keys` is free and takes them all at once (never some of them):
   * one token, a fence per key, loss of any key is loss of the whole. Not `fair`; one Redis
   * host, Sentinel or Cluster (keys over several slots are taken in slot order, without
   * deadlock).
   */
  acquire(keys: readonly string[], options?: AcquireOptions): Promise<Lock>
  /**
   * Runs `fn` while holding `key` and releases it afterwards. Inside `fn`, a nested `using` or
   * `acquire` of the same key in the same async call chain re-enters at once.
   */
  /**
   * Makes exactly one attempt: resolves to a Lock handle, or to null when the lock is held (a
   * host failure rejects). Takes the options of `acquire` but `waitTimeout`.
   */
  tryAcquire(key: string | readonly string[], options?: Omit<AcquireOptions, 'waitTimeout'>): Promise<Lock | null>
  using<T>(key: string | readonly string[], fn: (lock: Lock) => T | Promise<T>): Promise<T>
  using<T>(key: string | readonly string[], options: AcquireOptions | undefined, fn: (lock: Lock) => T | Promise<T>): Promise<T>
  /** A read-write lock on `key`. */
  rwlock(key: string): ReadWriteLock
  /** A semaphore on `key` with `permits` permits (see the README for changing it while in use). */
  semaphore(key: string, options: { permits: number }): Semaphore
  /** Counters of what this client's locks did; cheap, no round trip. */
  stats(): LockStats
  /** The state of `key` on every host: holder, remaining ttl, fence, fair queue. */
  inspect(key: string): Promise<LockInfo[]>
  /** Lock and semaphore keys, and read-write locks held by readers, matching a glob pattern, found with SCAN (never KEYS); at most `limit` (default and cap 10000). */
  list(pattern: string, options?: { limit?: number }): Promise<LockListing>
  /**
   * Releases `key` whoever holds it, as its holder would (a fair waiter next in line gets it). For
   * operators. Rejects with ERR_RELOCK_INVALID_ARGUMENT, touching nothing, when the key holds
   * anything but a relock lock.
   */
  forceRelease(key: string): Promise<boolean>
  on<E extends keyof RedlockEvents>(event: E, listener: (...args: RedlockEvents[E]) => void): this
  once<E extends keyof RedlockEvents>(event: E, listener: (...args: RedlockEvents[E]) => void): this
  off<E extends keyof RedlockEvents>(event: E, listener: (...args: RedlockEvents[E]) => void): this
  /** Ends pending calls and waits with `ERR_RELOCK_CLOSED`, refuses new ones, and releases the locks held through handles. */
  close(): Promise<void>
}

/** The client, also as the default export: `import Redlock from 'relock'`. */
export default Redlock

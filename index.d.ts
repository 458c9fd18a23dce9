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

/** Client settings; all durations in milliseconds. */
export interface RedlockOptions extends RetryOptions {
  /** Bound on connecting to one host. Default 2000. */
  connectTimeout?: number
  /** Bound on one Redis round trip. Default 1000. */
  commandTimeout?: number
  /** Share of the ttl set aside for clock drift between hosts: validity = ttl − elapsed − (ttl × driftFactor + 2). Default 0.01. */
  driftFactor?: number
}

/** A lock and how long it is safe to rely on. */
export interface LockWithValidity {
  token: string
  /** Milliseconds left on the lock (ttl less elapsed time and drift margin) when the answer was made. */
  validity: number
}

export declare class Redlock {
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
  /** As `lock`, and also tells how long the lock is safe to rely on. */
  lockWithValidity(key: string, ttl: number, options?: RetryOptions): Promise<LockWithValidity | null>
  /** Renews the lock to `ttl` ms if `token` still holds it. */
  extend(key: string, token: string, ttl: number): Promise<boolean>
  /** Releases the lock if `token` holds it. */
  unlock(key: string, token: string): Promise<boolean>
  /** Ends pending calls with `ERR_RELOCK_CLOSED` and refuses new ones. */
  close(): Promise<void>
}

// Compiled with `tsc --noEmit --strict` by the test command: every exported name, used as
// the README shows it. It is type-checked, not run.
import RedlockDefault, { Lock, PermitHandle, ReadWriteHandle, ReadWriteLock, Redlock, RelockError, Semaphore } from '..'
import type { PermitsOptions, ReadWriteState, SemaphoreState, RelockLogger, AcquireOptions, LockInfo, LockListing, LockStats, LockWithValidity, RedlockEvents, RedlockOptions, RelockErrorCode, RetryOptions, TlsOptions } from '..'

async function primitives(locks: Redlock): Promise<void> {
  const document: ReadWriteLock = locks.rwlock('document:7')
  const reader: ReadWriteHandle = await document.read({ ttl: 10_000 })
  const mode: 'read' | 'write' = reader.mode
  await reader.upgrade()
  await reader.downgrade()
  await reader.release()
  const words: number = await document.usingRead(async (lock) => lock.fence)
  await document.usingWrite({ fair: true }, async (lock) => lock.extend(5000))
  const rwState: ReadWriteState = await document.state()
  const pool: Semaphore = locks.semaphore('gpu-pool', { permits: 4 })
  const options: PermitsOptions = { permits: 2, waitTimeout: 1000, fair: true }
  const permits: PermitHandle = await pool.acquire(options)
  const taken: number = permits.permits
  await permits.release()
  const free: number = await pool.available()
  const semState: SemaphoreState = await pool.state()
  await pool.using(async (held) => held.permits)
  const both: Lock = await locks.acquire(['account:1', 'account:2'], { ttl: 5000 })
  const fences: number[] = both.fences
  const keys: string[] = both.keys
  await both.release()
  await locks.using(['account:1', 'account:2'], async (lock) => lock.fences)
  const token: string | null = await locks.lock(['a', 'b'], 5000)
  if (token) await locks.unlock(['a', 'b'], token)
  const maybe: Lock | null = await locks.tryAcquire(['a', 'b'])
  void [mode, words, rwState, taken, free, semState, fences, keys, maybe, Semaphore, ReadWriteLock, PermitHandle, ReadWriteHandle]
}

async function example(): Promise<void> {
  const options: RedlockOptions = { prefix: 'billing:', logger: console, metrics: { keyGroup: (key) => key.split(':')[0] }, connectTimeout: 2000, commandTimeout: 1000, driftFactor: 0.01, retryCount: 3, retryDelay: 50, retryJitter: 50, retryTimeout: 1000 }
  const locks = new Redlock('redis://127.0.0.1:6379', options)
  const sameClass: typeof Redlock = RedlockDefault
  const warnOnly: RelockLogger = { warn: (line) => console.warn(line) }
  const redlock = new Redlock(['redis://127.0.0.1:7001', 'redis://127.0.0.1:7002', 'redis://127.0.0.1:7003'])
  const tls: TlsOptions = { ca: Buffer.from('-----BEGIN CERTIFICATE-----'), cert: 'PEM', key: 'PEM', dangerouslyAcceptAnyCertificate: false }
  const secure = new Redlock('rediss://redis.internal:6380', { username: 'locker', password: 'secret', tls, replicaAck: { replicas: 1, timeout: 50, policy: 'warn' } })
  secure.on('replication', ({ error }) => console.warn(error.message))
  const viaSentinel = new Redlock(['redis://10.0.0.5:26379', 'redis://10.0.0.6:26379'], { sentinel: { name: 'mymaster' } })
  await viaSentinel.close()
  const onCluster = new Redlock(['redis://10.0.0.7:7000', 'redis://10.0.0.8:7000'], { cluster: true })
  await onCluster.close()
  await secure.close()
  const hosts: string[] = redlock.hosts
  const retry: RetryOptions = { retryCount: 2 }
  const token: string | null = await locks.lock('order:42', 5000, retry)
  if (token) {
    const extended: boolean = await locks.extend('order:42', token, 5000)
    const released: boolean = await locks.unlock('order:42', token)
    void [extended, released]
  }
  const lease: LockWithValidity | null = await redlock.lockWithValidity('invoice:7', 10_000)
  if (lease) console.log(lease.token, lease.validity.toFixed(0))
  try {
    await locks.lock('', 1)
  } catch (error) {
    if (error instanceof RelockError) {
      const code: RelockErrorCode = error.code
      console.log(code, error.message)
    }
  }
  const controller = new AbortController()
  const acquireOptions: AcquireOptions = {
    ttl: 30_000,
    waitTimeout: Infinity,
    fair: true,
    signal: controller.signal,
    watchdog: true,
    maxHold: 60_000,
    onLost: (reason: RelockError) => console.error(reason.code),
  }
  const lock: Lock = await locks.acquire('order:42', acquireOptions)
  const fence: number = lock.fence
  const valid: boolean = lock.isValid()
  const left: number = lock.remainingMs()
  lock.signal.addEventListener('abort', () => console.log(lock.key, lock.token))
  await lock.extend(60_000)
  const releasedNow: boolean = await lock.release()
  await lock[Symbol.asyncDispose]()
  const total: number = await locks.using('order:42', { ttl: 5_000 }, async (held: Lock) => held.fence + fence)
  const plain: string = await locks.using('order:42', () => 'done')
  void [valid, left, releasedNow, total, plain]
  locks.on('acquired', ({ key, fence: acquiredFence, waitedMs }) => console.log(key, acquiredFence, waitedMs.toFixed(1)))
  locks.on('lost', ({ error }) => console.error(error.code))
  locks.once('timeout', ({ waitedMs }) => console.log(waitedMs))
  const onReleased = (detail: RedlockEvents['released'][0]) => console.log(detail.heldMs)
  locks.on('released', onReleased).off('released', onReleased)
  locks.on('extended', ({ ttl }) => console.log(ttl))
  const listening: number = locks.listenerCount('acquired')
  locks.removeAllListeners('acquired')
  void listening
  const stats: LockStats = locks.stats()
  const info: LockInfo[] = await locks.inspect('order:42')
  const maybe: Lock | null = await locks.tryAcquire('order:42', { ttl: 5000, fair: false })
  await maybe?.release()
  const keys: LockListing = await locks.list('order:*', { limit: 10 })
  const unreachable: string[] = keys.failedHosts.map(({ host, error }) => `${host}: ${error.code}`)
  const hostErrors: Array<RelockErrorCode | undefined> = info.map((state) => state.error?.code)
  const forced: boolean = await locks.forceRelease('order:42')
  void [stats.acquired, info[0]?.waiters.length, keys, forced]
  const closed: boolean = locks.closed
  void [hosts, closed]
  await locks.close()
  await redlock.close()
}

void example

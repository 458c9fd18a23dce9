// Compiled with `tsc --noEmit --strict` by the test command: every exported name, used as
// the README shows it. It is type-checked, not run.
import { Redlock, RelockError } from '..'
import type { LockWithValidity, RedlockOptions, RelockErrorCode, RetryOptions } from '..'

async function example(): Promise<void> {
  const options: RedlockOptions = { connectTimeout: 2000, commandTimeout: 1000, driftFactor: 0.01, retryCount: 3, retryDelay: 50, retryJitter: 50, retryTimeout: 1000 }
  const locks = new Redlock('redis://127.0.0.1:6379', options)
  const redlock = new Redlock(['redis://127.0.0.1:7001', 'redis://127.0.0.1:7002', 'redis://127.0.0.1:7003'])
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
  const closed: boolean = locks.closed
  void [hosts, closed]
  await locks.close()
  await redlock.close()
}

void example

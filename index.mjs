// ES module entry: the same classes as the CommonJS entry (one copy of the native addon).
import relock from './index.js'

export const { Redlock, RelockError, Lock, ReadWriteLock, ReadWriteHandle, Semaphore, PermitHandle } = relock
export default relock.Redlock

// ES module entry: the same classes as the CommonJS entry (one copy of the native addon).
import relock from './index.js'

export const { Redlock, RelockError, Lock } = relock
export default relock.Redlock

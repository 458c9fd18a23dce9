'use strict'

// The numbers the verification holds the library to, and why they are what they are.

const CONNECT_TIMEOUT_MS = 300
const COMMAND_TIMEOUT_MS = 300

module.exports = {
  CONNECT_TIMEOUT_MS,
  COMMAND_TIMEOUT_MS,
  // A lost lock must be reported (signal, onLost or the 'lost' event) at most this long after
  // the holder first saw isValid() === false: the native core knows the lease end exactly, so
  // only the hop to the JavaScript thread lies in between.
  LOSS_REPORT_TOLERANCE_MS: 50,
  // Scheduling slack for a call's bound on a 2-core machine shared by ~10 redis-servers and
  // several Node processes. Time the caller's own event loop was blocked or lagging is
  // subtracted first, so this only absorbs thread scheduling and GC on the native side.
  CALL_SLACK_MS: 250,
  // A waiter sleeps until woken; it may re-check at the holder's ttl. 500 commands per second
  // per waiter on one host is far above that and far below a polling loop (tens of thousands).
  // The traffic of holders (renewals every ttl/3) and of plain lock calls is allowed for
  // separately, per actor that is not waiting (measured: about 150 commands/s per host for all
  // 12 actors of a topology together when nothing goes wrong).
  COMMANDS_PER_WAITER_PER_S: 500,
  COMMANDS_PER_OTHER_ACTOR_PER_S: 50,
  // README: a fair waiter that stops checking in is dropped after 3 s of silence.
  FAIR_LIVENESS_MS: 3000,
  FAIR_SLACK_MS: 500,
  // The longest ttl any scenario uses (fair waiters), for the final ghost-lock check.
  LONGEST_TTL_MS: 6000,
}

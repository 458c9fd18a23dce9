'use strict'

const { test, before, after } = require('node:test')
const assert = require('node:assert/strict')
const { execFileSync } = require('node:child_process')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { inspect } = require('node:util')
const fc = require('fast-check')

const { Redlock, RelockError, Lock } = require('..')
const { RedisServer, freePort } = require('../tools/redis-server')

// A throwaway CA, a server certificate for localhost and 127.0.0.1, and a client certificate.
function makeCertificates() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'relock-tls-'))
  const openssl = (...args) => execFileSync('openssl', args, { cwd: dir, stdio: 'ignore' })
  openssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'ca.key', '-out', 'ca.crt', '-days', '2', '-subj', '/CN=relock test CA')
  // Extensions make version 3 certificates, the only version rustls accepts.
  fs.writeFileSync(path.join(dir, 'server.ext'), 'subjectAltName=DNS:localhost,IP:127.0.0.1\n')
  fs.writeFileSync(path.join(dir, 'client.ext'), 'extendedKeyUsage=clientAuth\n')
  for (const [name, extra] of [['server', ['-extfile', 'server.ext']], ['client', ['-extfile', 'client.ext']]]) {
    openssl('req', '-newkey', 'rsa:2048', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${name === 'server' ? 'localhost' : 'relock client'}`)
    openssl('x509', '-req', '-in', `${name}.csr`, '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-out', `${name}.crt`, '-days', '2', ...extra)
  }
  const read = (file) => fs.readFileSync(path.join(dir, file))
  return { dir, ca: read('ca.crt'), serverCert: path.join(dir, 'server.crt'), serverKey: path.join(dir, 'server.key'), clientCert: read('client.crt'), clientKey: read('client.key') }
}

let certs
let tlsServer
let mtlsServer
let aclServer
let tlsPort
let mtlsPort

async function startTlsServer(authClients) {
  const port = await freePort()
  const server = await RedisServer.start([
    '--tls-port', String(port), '--tls-cert-file', certs.serverCert, '--tls-key-file', certs.serverKey,
    '--tls-ca-cert-file', path.join(certs.dir, 'ca.crt'), '--tls-auth-clients', authClients,
  ])
  return [server, port]
}

before(async () => {
  certs = makeCertificates()
  ;[tlsServer, tlsPort] = await startTlsServer('no')
  ;[mtlsServer, mtlsPort] = await startTlsServer('yes')
  aclServer = await RedisServer.start(['--user', 'default', 'off', '--user', 'locker', 'on', '>locker-secret', '~*', '&*', '+@all', '--user', 'reader', 'on', '>reader-secret', '~*', '+get', '+ping', '+hello', '+client'])
})

after(async () => {
  await Promise.all([tlsServer.stop(), mtlsServer.stop(), aclServer.stop()])
  fs.rmSync(certs.dir, { recursive: true, force: true })
})

const fast = { connectTimeout: 1000, commandTimeout: 500 }

async function roundTrip(client, key = 'secure') {
  const token = await client.lock(key, 2000)
  assert.ok(token)
  assert.equal(await client.unlock(key, token), true)
}

test('rediss:// verifies the server certificate against the given CA', async () => {
  for (const host of ['localhost', '127.0.0.1']) {
    const client = new Redlock(`rediss://${host}:${tlsPort}`, { ...fast, tls: { ca: certs.ca } })
    await roundTrip(client)
    await client.close()
  }
  const asString = new Redlock(`rediss://localhost:${tlsPort}`, { ...fast, tls: { ca: certs.ca.toString() } })
  await roundTrip(asString)
  await asString.close()
})

test('rediss:// refuses a certificate it cannot verify', async () => {
  const untrusted = new Redlock(`rediss://localhost:${tlsPort}`, fast)
  await assert.rejects(untrusted.lock('k', 1000), (error) => error.code === 'ERR_RELOCK_CONNECTION' && /certificate/i.test(error.message))
  await untrusted.close()
})

test('skipping verification takes the loudly named option, and warns', async () => {
  const warnings = []
  const onWarning = (warning) => warnings.push(warning.message)
  process.on('warning', onWarning)
  const insecure = new Redlock(`rediss://127.0.0.1:${tlsPort}`, { ...fast, tls: { dangerouslyAcceptAnyCertificate: true } })
  await roundTrip(insecure)
  await insecure.close()
  await new Promise((resolve) => setImmediate(resolve))
  process.off('warning', onWarning)
  assert.ok(warnings.some((message) => /certificate checks are off/.test(message)), warnings.join('; '))
  assert.throws(() => new Redlock(`rediss://127.0.0.1:${tlsPort}/#insecure`), { code: 'ERR_RELOCK_INVALID_URL' })
})

test('client certificates for servers that require them', async () => {
  const without = new Redlock(`rediss://localhost:${mtlsPort}`, { ...fast, tls: { ca: certs.ca } })
  await assert.rejects(without.lock('k', 1000), (error) => error instanceof RelockError && ['ERR_RELOCK_CONNECTION', 'ERR_RELOCK_TIMEOUT'].includes(error.code))
  await without.close()
  const withCert = new Redlock(`rediss://localhost:${mtlsPort}`, { ...fast, tls: { ca: certs.ca, cert: certs.clientCert, key: certs.clientKey } })
  await roundTrip(withCert)
  await withCert.close()
  assert.throws(() => new Redlock(`rediss://localhost:${mtlsPort}`, { tls: { cert: certs.clientCert } }), /tls.cert and tls.key must be given together/)
  assert.throws(() => new Redlock(tlsServer.url, { tls: { ca: certs.ca } }), /not a rediss:\/\/ URL/)
  assert.throws(() => new Redlock(tlsServer.url, { tls: { ca: 42 } }), { code: 'ERR_RELOCK_INVALID_ARGUMENT' })
})

test('ACL users: in the URL or in options; a wrong password has its own code and is never shown', async () => {
  const inUrl = new Redlock(`redis://locker:locker-secret@127.0.0.1:${aclServer.port}`, fast)
  await roundTrip(inUrl)
  const inOptions = new Redlock(aclServer.url, { ...fast, username: 'locker', password: 'locker-secret' })
  await roundTrip(inOptions)

  const wrong = new Redlock(`redis://locker:not-the-secret@127.0.0.1:${aclServer.port}`, fast)
  const error = await wrong.lock('k', 1000).then(() => null, (e) => e)
  assert.equal(error.code, 'ERR_RELOCK_AUTH', error.message)
  for (const shown of [error.message, error.stack, inspect(error), inspect(wrong), inspect(inUrl), inspect(inOptions), JSON.stringify(inUrl.hosts)]) {
    assert.doesNotMatch(shown, /secret/)
  }
  // A user without the permissions to lock is told so, not left hanging.
  const reader = new Redlock(aclServer.url, { ...fast, username: 'reader', password: 'reader-secret' })
  await assert.rejects(reader.lock('k', 1000), (e) => e.code === 'ERR_RELOCK_AUTH' && /NOPERM|permission/i.test(e.message))
  for (const client of [inUrl, inOptions, wrong, reader]) await client.close()
})

test('keys with unicode, spaces, braces and odd bytes work; oversized input is refused', async () => {
  const plain = await RedisServer.start()
  const client = new Redlock(plain.url, fast)
  try {
    for (const key of ['ключ 🔒', 'with spaces and\ttabs', '{braces}', 'a{b', '}{', '\u0000\u0001\u00ff', "'; return redis.call('FLUSHALL') --"]) {
      const token = await client.lock(key, 5000)
      assert.ok(token, JSON.stringify(key))
      assert.equal(await client.lock(key, 5000), null)
      assert.equal(await client.unlock(key, token), true)
      const lock = await client.acquire(key, { ttl: 1000 })
      assert.equal(await lock.release(), true)
    }
    assert.equal(plain.cli('DBSIZE'), '7', 'only the fence counters remain; nothing was flushed')
    await assert.rejects(client.lock('k'.repeat(4097), 1000), /key is 4097 bytes long; the limit is 4096/)
    await assert.rejects(client.unlock('k', 't'.repeat(1025)), /token is 1025 bytes long; the limit is 1024/)
  } finally {
    await client.close()
    await plain.stop()
  }
})

test('tokens are random uuid v4s', async () => {
  const plain = await RedisServer.start()
  const client = new Redlock(plain.url, fast)
  const tokens = await Promise.all(Array.from({ length: 1000 }, (_, i) => client.lock(`t${i}`, 1000)))
  assert.equal(new Set(tokens).size, 1000)
  for (const token of tokens) assert.match(token, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/)
  await client.close()
  await plain.stop()
})

const DOCUMENTED_CODES = new Set([
  'ERR_RELOCK_INVALID_ARGUMENT', 'ERR_RELOCK_INVALID_URL', 'ERR_RELOCK_CONNECTION', 'ERR_RELOCK_TIMEOUT',
  'ERR_RELOCK_AUTH', 'ERR_RELOCK_REDIS', 'ERR_RELOCK_CLOSED', 'ERR_RELOCK_NO_QUORUM', 'ERR_RELOCK_VALIDITY_EXPIRED',
  'ERR_RELOCK_WAIT_TIMEOUT', 'ERR_RELOCK_LOCK_LOST', 'ERR_RELOCK_UNSUPPORTED', 'ABORT_ERR',
])

test('random arguments of every type: each call works as documented or rejects with a documented code', async () => {
  const plain = await RedisServer.start()
  const client = new Redlock(plain.url, { connectTimeout: 500, commandTimeout: 500 })
  const anything = fc.oneof(
    fc.string({ maxLength: 20 }), fc.string({ minLength: 4090, maxLength: 4100 }), fc.integer(), fc.double(), fc.boolean(),
    fc.constant(null), fc.constant(undefined), fc.constant(NaN), fc.constant(Infinity), fc.constant(-0), fc.constant(2 ** 31),
    fc.bigInt(), fc.array(fc.string(), { maxLength: 3 }), fc.object({ maxDepth: 1 }), fc.constant(Symbol('s')), fc.constant(() => 1),
    fc.constant(Buffer.from('key')), fc.constant(new Date()),
    fc.record({ ttl: fc.oneof(fc.integer(), fc.double(), fc.string()), waitTimeout: fc.oneof(fc.constant(0), fc.integer({ min: -5, max: 50 })), fair: fc.boolean(), retryCount: fc.integer({ min: -2, max: 2 }) }, { requiredKeys: [] }),
  )
  // Arguments that are often well-formed, so that the calls also get as far as Redis.
  const plausible = fc.oneof(
    { arbitrary: fc.string({ minLength: 1, maxLength: 12 }), weight: 3 },
    { arbitrary: fc.integer({ min: 1, max: 3000 }), weight: 2 },
    { arbitrary: fc.record({ ttl: fc.integer({ min: 1, max: 3000 }), waitTimeout: fc.integer({ min: 0, max: 30 }) }), weight: 1 },
    { arbitrary: anything, weight: 2 },
  )
  const methods = ['lock', 'lockWithValidity', 'extend', 'unlock', 'acquire', 'using']
  const outcomes = new Map()
  await fc.assert(
    fc.asyncProperty(fc.constantFrom(...methods), fc.array(plausible, { maxLength: 4 }), async (method, args) => {
      let result
      try {
        result = await client[method](...args)
      } catch (error) {
        assert.ok(error instanceof RelockError, `${method}(${inspect(args)}) threw a non-RelockError: ${inspect(error)}`)
        assert.ok(DOCUMENTED_CODES.has(error.code), `${method} rejected with undocumented code ${error.code}`)
        outcomes.set(error.code, (outcomes.get(error.code) ?? 0) + 1)
        return
      }
      outcomes.set('resolved', (outcomes.get('resolved') ?? 0) + 1)
      if (result instanceof Lock) await result.release()
      if (method === 'lock' && typeof result === 'string') await client.unlock(args[0], result)
    }),
    { numRuns: 400 },
  )
  assert.ok((outcomes.get('ERR_RELOCK_INVALID_ARGUMENT') ?? 0) > 50, inspect(outcomes))
  assert.ok((outcomes.get('resolved') ?? 0) > 0, inspect(outcomes))
  // The constructor, too.
  fc.assert(fc.property(anything, anything, (urls, options) => {
    try {
      const made = new Redlock(urls, options)
      made.close()
    } catch (error) {
      assert.ok(error instanceof RelockError && DOCUMENTED_CODES.has(error.code), inspect(error))
    }
  }), { numRuns: 300 })
  await client.close()
  await plain.stop()
})

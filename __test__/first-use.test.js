'use strict'

// What a new user meets first: wrong URLs, wrong ports, wrong permissions, file paths where
// certificates go, the default import, the licence.

const { test, before, after } = require('node:test')
const assert = require('node:assert/strict')
const net = require('node:net')
const fs = require('node:fs')
const path = require('node:path')
const { execFileSync } = require('node:child_process')

const { Redlock } = require('..')
const { RedisServer } = require('../tools/redis-server')

let server
before(async () => {
  server = await RedisServer.start()
})
after(async () => {
  await server.stop()
})

test('a port that does not speak Redis is reported as such, not as parser bytes', async () => {
  const impostor = net.createServer((socket) => socket.end('HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n'))
  await new Promise((resolve) => impostor.listen(0, '127.0.0.1', resolve))
  const locks = new Redlock(`redis://127.0.0.1:${impostor.address().port}`, { connectTimeout: 500, commandTimeout: 500 })
  try {
    const error = await locks.lock('k', 1000).then(() => null, (e) => e)
    assert.ok(error, 'the call succeeded')
    assert.equal(error.code, 'ERR_RELOCK_CONNECTION', error.message)
    assert.match(error.message, /not a Redis server/)
  } finally {
    await locks.close()
    impostor.close()
  }
})

test('a user without the permission is told so, not that the password was wrong', async () => {
  server.cli('ACL', 'SETUSER', 'reader', 'on', '>secret', '~*', '+get', '+hello', '+client', '+ping')
  const locks = new Redlock(`redis://reader:secret@127.0.0.1:${server.port}`, { connectTimeout: 500, commandTimeout: 500 })
  try {
    const error = await locks.lock('k', 1000).then(() => null, (e) => e)
    assert.equal(error.code, 'ERR_RELOCK_AUTH', error.message)
    assert.match(error.message, /permission/)
    assert.doesNotMatch(error.message, /authentication failed/)
  } finally {
    await locks.close()
  }
})

test('the database of a URL is used, as a path or as ?db=', async () => {
  for (const url of [`${server.url}/3`, `${server.url}?db=3`, `${server.url}/?db=3`]) {
    const locks = new Redlock(url)
    try {
      const token = await locks.lock('in-db-3', 1000)
      assert.equal(server.cli('-n', '3', 'GET', 'in-db-3'), token, url)
      assert.equal(server.cli('GET', 'in-db-3'), '', url)
      await locks.unlock('in-db-3', token)
    } finally {
      await locks.close()
    }
  }
  for (const [url, pattern] of [
    [`${server.url}/2?db=3`, /database 2 and \?db=3/],
    [`${server.url}?db=x`, /db must be a database number/],
    [`${server.url}?protocol=resp2`, /unknown URL parameter 'protocol'/],
  ]) {
    assert.throws(() => new Redlock(url), (error) => error.code === 'ERR_RELOCK_INVALID_URL' && pattern.test(error.message), url)
  }
})

test('a certificate option given a file path is refused at once', () => {
  for (const field of ['ca', 'cert', 'key']) {
    const tls = { ca: '-----BEGIN CERTIFICATE-----\n…', [field]: '/etc/ssl/certs/ca.pem' }
    if (field !== 'ca') tls[field === 'cert' ? 'key' : 'cert'] = '-----BEGIN X-----\n…'
    assert.throws(
      () => new Redlock('rediss://127.0.0.1:6380', { tls }),
      (error) => error.code === 'ERR_RELOCK_INVALID_ARGUMENT' && new RegExp(`tls.${field} .*file path.*readFileSync`).test(error.message),
      field,
    )
  }
})

test('the default import works as node-redlock users write it', async () => {
  const esm = await import('relock')
  assert.equal(esm.default, Redlock)
  assert.equal(require('..').default, Redlock)
})

test('the repository and the package carry the licence', () => {
  const root = path.join(__dirname, '..')
  assert.match(fs.readFileSync(path.join(root, 'LICENSE'), 'utf8'), /MIT License/)
  assert.ok(require('../package.json').files.includes('LICENSE'))
})

test('the relock command refuses a limit that is not a number as a usage error', () => {
  const cli = path.join(__dirname, '..', 'bin', 'relock.js')
  for (const limit of ['abc', '0', '-3', '1.5']) {
    assert.throws(
      () => execFileSync(process.execPath, [cli, 'list', '--limit', limit, '--url', server.url], { stdio: 'pipe' }),
      (error) => error.status === 2 && /--limit/.test(error.stderr),
      limit,
    )
  }
})

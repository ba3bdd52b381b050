// Package sqlite is the SQLite backend of store.Store: versioned FHIR
// resources (R4 http.html: read, vread, update, delete as tombstone
// versions, history with _since and _at, batch and transaction bundles
// applied all-or-nothing, http.html#trules) in a relational layout like
// HAPI FHIR's JPA server, and search (R4 search.html) compiled from the
// backend-neutral AST of fhir/search into SQL over one index table per
// kind of search value.
//
// Layout (schema.go; store/sqlite/README.md has the full table):
//
//   - res: the current version of each resource (an integer surrogate key
//     rid, type, id, version, lastUpdated, tombstone flag and the release
//     instants of the release rules);
//   - ver: every version (raw JSON bytes exactly as served, the extracted
//     search.Index, the release state), the source of read, vread and
//     history;
//   - str, tok, ref, dt, num, qty, uri: the search values of the current
//     versions (search.html#ptypes), one row per value, keyed by resource
//     type and parameter code first, so one index per kind serves every
//     parameter of that kind; composite tuples (search.html#composite) are
//     rows of cmp, and their component values are rows of the same value
//     tables tied to their tuple, so a CompositeCond is answered exactly
//     (every part by the same tuple);
//   - cpt (patient compartments, compartmentdefinition.html) and sec
//     (meta.security); hcpt and hsec hold compartments and labels of every
//     version, for access-controlled history; res.has answers :missing
//     (search.html#missing) and res.srt holds the scalars of _sort
//     (search.html#sort).
//
// Every write is one SQLite transaction on the single writer connection
// (WAL mode); concurrent writes are applied by one goroutine, which commits
// whatever arrived together in one transaction (group commit; when a
// request fails, the group runs again with a savepoint per request, so a
// conflict rolls back that request only).
// Reads use a pool of reader connections and see a snapshot.
package sqlite

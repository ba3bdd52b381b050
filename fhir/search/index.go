package search

import "time"

// Index is what extraction (Extract) takes out of one resource version at
// write time, normalised per parameter type (search.html#ptypes). A store
// persists it beside the raw JSON and answers Expr from it; how it is laid
// out (column names, document field names) is the store's business
// (store/sqlite's tables, store/mongo's mquery.BSONIndex).
//
// Every entry carries Param, the search parameter code, so one index per
// value kind (tokens: param, code, system) serves every parameter of that
// kind.
type Index struct {
	Str  []StrValue
	Tok  []TokValue
	Ref  []RefValue
	Date []DateValue
	Num  []NumValue
	Qty  []QtyValue
	URI  []URIValue
	Comp []CompValue
	// Has lists the parameter codes with at least one value (:missing).
	Has []string
	// Compartments lists "Patient/123" for every patient compartment the
	// resource is in (CompartmentDefinition-patient), including a Patient's
	// own, and for the other types the patients that link them (compartment.go).
	Compartments []string
	// Security lists meta.security and securityLabel codings as "system|code".
	Security []string
	// Sort holds one scalar per parameter for _sort (string, float64 or time.Time).
	Sort map[string]any
}

// StrValue is a string value (search.html#string): Value folded (lower
// case, accents removed) for prefix and :contains matching, Exact as
// written (:exact; empty when equal to Value).
type StrValue struct {
	Param, Value, Exact string
}

// TokValue is a token (search.html#token): System|Code, Text the folded
// display or text (:text); for identifiers with a type, TypeSystem|TypeCode
// is Identifier.type's coding (:of-type).
type TokValue struct {
	Param, System, Code, Text, TypeSystem, TypeCode string
}

// RefValue is a reference (search.html#reference): Ref is "Type/id" for
// local references (absolute URLs of this server made relative) or the
// absolute or canonical URL; Type the target type, ID the id, Version a
// canonical's version; IDSystem|IDValue the Reference.identifier.
type RefValue struct {
	Param, Ref, Type, ID, Version, IDSystem, IDValue string
}

// DateValue is the range [Lo, Hi) a date, dateTime, instant, Period or
// Timing covers (search.html#date).
type DateValue struct {
	Param  string
	Lo, Hi time.Time
}

// NumValue is a number with its implicit precision range [Lo, Hi)
// (search.html#number).
type NumValue struct {
	Param         string
	Value, Lo, Hi float64
}

// QtyValue is a Quantity with its precision range; System|Code the unit's
// system and code, Unit the unit text (search.html#quantity).
type QtyValue struct {
	Param              string
	Value, Lo, Hi      float64
	System, Code, Unit string
}

// URIValue is a uri, url or canonical value (search.html#uri).
type URIValue struct {
	Param, Value string
}

// CompValue is one tuple of a composite parameter (search.html#composite);
// its component values are in Parts with Param set to the component
// position ("0", "1", ...).
type CompValue struct {
	Param string
	Parts Index
}

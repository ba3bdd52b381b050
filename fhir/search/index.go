package search

import "time"

// Index is what extraction (Extract) takes out of one resource version at
// write time, normalised per parameter type (search.html#ptypes). A store
// persists it beside the raw JSON and answers Expr from it; field names are
// short because they are repeated in every stored document.
//
// Every entry carries P, the search parameter code, so one multikey index
// per value kind (e.g. {tok.p, tok.c, tok.s}) serves every token parameter.
type Index struct {
	Str  []StrValue  `bson:"str,omitempty" json:"str,omitempty"`
	Tok  []TokValue  `bson:"tok,omitempty" json:"tok,omitempty"`
	Ref  []RefValue  `bson:"ref,omitempty" json:"ref,omitempty"`
	Date []DateValue `bson:"dt,omitempty" json:"dt,omitempty"`
	Num  []NumValue  `bson:"num,omitempty" json:"num,omitempty"`
	Qty  []QtyValue  `bson:"qty,omitempty" json:"qty,omitempty"`
	URI  []URIValue  `bson:"uri,omitempty" json:"uri,omitempty"`
	Comp []CompValue `bson:"cmp,omitempty" json:"cmp,omitempty"`
	// Has lists the parameter codes with at least one value (:missing).
	Has []string `bson:"has,omitempty" json:"has,omitempty"`
	// Compartments lists "Patient/123" for every patient compartment the
	// resource is in (CompartmentDefinition-patient), including a Patient's own.
	Compartments []string `bson:"cpt,omitempty" json:"cpt,omitempty"`
	// Security lists meta.security and securityLabel codings as "system|code".
	Security []string `bson:"sec,omitempty" json:"sec,omitempty"`
	// Sort holds one scalar per parameter for _sort (string, float64 or time.Time).
	Sort map[string]any `bson:"srt,omitempty" json:"srt,omitempty"`
}

// StrValue is a string value: V folded (lower case, accents removed), X as written.
type StrValue struct {
	P string `bson:"p" json:"p"`
	V string `bson:"v" json:"v"`
	X string `bson:"x,omitempty" json:"x,omitempty"`
}

// TokValue is a token: system S, code C, folded display/text T; for
// identifiers with a type, TS|TC is Identifier.type's coding (:of-type).
type TokValue struct {
	P  string `bson:"p" json:"p"`
	S  string `bson:"s,omitempty" json:"s,omitempty"`
	C  string `bson:"c,omitempty" json:"c,omitempty"`
	T  string `bson:"t,omitempty" json:"t,omitempty"`
	TS string `bson:"ts,omitempty" json:"ts,omitempty"`
	TC string `bson:"tc,omitempty" json:"tc,omitempty"`
}

// RefValue is a reference: R is "Type/id" for local references (absolute
// URLs of this server made relative) or the absolute/canonical URL; T the
// target type, I the id, V a canonical's version; IS|IC Reference.identifier.
type RefValue struct {
	P  string `bson:"p" json:"p"`
	R  string `bson:"r,omitempty" json:"r,omitempty"`
	T  string `bson:"t,omitempty" json:"t,omitempty"`
	I  string `bson:"i,omitempty" json:"i,omitempty"`
	V  string `bson:"v,omitempty" json:"v,omitempty"`
	IS string `bson:"is,omitempty" json:"is,omitempty"`
	IC string `bson:"ic,omitempty" json:"ic,omitempty"`
}

// DateValue is the range [Lo, Hi) a date, dateTime, instant, Period or Timing covers.
type DateValue struct {
	P  string    `bson:"p" json:"p"`
	Lo time.Time `bson:"lo" json:"lo"`
	Hi time.Time `bson:"hi" json:"hi"`
}

// NumValue is a number with its implicit precision range [Lo, Hi).
type NumValue struct {
	P  string  `bson:"p" json:"p"`
	V  float64 `bson:"v" json:"v"`
	Lo float64 `bson:"lo" json:"lo"`
	Hi float64 `bson:"hi" json:"hi"`
}

// QtyValue is a Quantity with precision range; S|C the unit system|code, U the unit text.
type QtyValue struct {
	P  string  `bson:"p" json:"p"`
	V  float64 `bson:"v" json:"v"`
	Lo float64 `bson:"lo" json:"lo"`
	Hi float64 `bson:"hi" json:"hi"`
	S  string  `bson:"s,omitempty" json:"s,omitempty"`
	C  string  `bson:"c,omitempty" json:"c,omitempty"`
	U  string  `bson:"u,omitempty" json:"u,omitempty"`
}

// URIValue is a uri / url / canonical value.
type URIValue struct {
	P string `bson:"p" json:"p"`
	V string `bson:"v" json:"v"`
}

// CompValue is one tuple of a composite parameter; its component values
// are in X with P set to the component position ("0", "1", ...).
type CompValue struct {
	P string `bson:"p" json:"p"`
	X Index  `bson:"x" json:"x"`
}

package mquery

import (
	"time"

	"github.com/fhirgate/fhirgate/fhir/search"
)

// BSONIndex is a search.Index in the layout of MongoDB documents: the
// short field names every filter and index of this package uses (idx.tok.p,
// idx.tok.c, ...), repeated in every stored document. search.Index itself
// knows no storage layout; ToBSON and FromBSON convert.
type BSONIndex struct {
	Str          []bsonStr      `bson:"str,omitempty"`
	Tok          []bsonTok      `bson:"tok,omitempty"`
	Ref          []bsonRef      `bson:"ref,omitempty"`
	Date         []bsonDate     `bson:"dt,omitempty"`
	Num          []bsonNum      `bson:"num,omitempty"`
	Qty          []bsonQty      `bson:"qty,omitempty"`
	URI          []bsonURI      `bson:"uri,omitempty"`
	Comp         []bsonComp     `bson:"cmp,omitempty"`
	Has          []string       `bson:"has,omitempty"`
	Compartments []string       `bson:"cpt,omitempty"`
	Security     []string       `bson:"sec,omitempty"`
	Sort         map[string]any `bson:"srt,omitempty"`
}

type bsonStr struct {
	P string `bson:"p"`
	V string `bson:"v"`
	X string `bson:"x,omitempty"`
}

type bsonTok struct {
	P  string `bson:"p"`
	S  string `bson:"s,omitempty"`
	C  string `bson:"c,omitempty"`
	T  string `bson:"t,omitempty"`
	TS string `bson:"ts,omitempty"`
	TC string `bson:"tc,omitempty"`
}

type bsonRef struct {
	P  string `bson:"p"`
	R  string `bson:"r,omitempty"`
	T  string `bson:"t,omitempty"`
	I  string `bson:"i,omitempty"`
	V  string `bson:"v,omitempty"`
	IS string `bson:"is,omitempty"`
	IC string `bson:"ic,omitempty"`
}

type bsonDate struct {
	P  string    `bson:"p"`
	Lo time.Time `bson:"lo"`
	Hi time.Time `bson:"hi"`
}

type bsonNum struct {
	P  string  `bson:"p"`
	V  float64 `bson:"v"`
	Lo float64 `bson:"lo"`
	Hi float64 `bson:"hi"`
}

type bsonQty struct {
	P  string  `bson:"p"`
	V  float64 `bson:"v"`
	Lo float64 `bson:"lo"`
	Hi float64 `bson:"hi"`
	S  string  `bson:"s,omitempty"`
	C  string  `bson:"c,omitempty"`
	U  string  `bson:"u,omitempty"`
}

type bsonURI struct {
	P string `bson:"p"`
	V string `bson:"v"`
}

type bsonComp struct {
	P string    `bson:"p"`
	X BSONIndex `bson:"x"`
}

func conv[A, B any](xs []A, f func(A) B) []B {
	if xs == nil {
		return nil
	}
	out := make([]B, len(xs))
	for i, x := range xs {
		out[i] = f(x)
	}
	return out
}

// ToBSON is x in the document layout.
func ToBSON(x search.Index) BSONIndex {
	return BSONIndex{
		Str: conv(x.Str, func(v search.StrValue) bsonStr { return bsonStr{v.Param, v.Value, v.Exact} }),
		Tok: conv(x.Tok, func(v search.TokValue) bsonTok {
			return bsonTok{v.Param, v.System, v.Code, v.Text, v.TypeSystem, v.TypeCode}
		}),
		Ref: conv(x.Ref, func(v search.RefValue) bsonRef {
			return bsonRef{v.Param, v.Ref, v.Type, v.ID, v.Version, v.IDSystem, v.IDValue}
		}),
		Date: conv(x.Date, func(v search.DateValue) bsonDate { return bsonDate{v.Param, v.Lo, v.Hi} }),
		Num:  conv(x.Num, func(v search.NumValue) bsonNum { return bsonNum{v.Param, v.Value, v.Lo, v.Hi} }),
		Qty: conv(x.Qty, func(v search.QtyValue) bsonQty {
			return bsonQty{v.Param, v.Value, v.Lo, v.Hi, v.System, v.Code, v.Unit}
		}),
		URI:          conv(x.URI, func(v search.URIValue) bsonURI { return bsonURI{v.Param, v.Value} }),
		Comp:         conv(x.Comp, func(v search.CompValue) bsonComp { return bsonComp{v.Param, ToBSON(v.Parts)} }),
		Has:          x.Has,
		Compartments: x.Compartments,
		Security:     x.Security,
		Sort:         x.Sort,
	}
}

// FromBSON is the search.Index of b.
func FromBSON(b BSONIndex) search.Index {
	return search.Index{
		Str: conv(b.Str, func(v bsonStr) search.StrValue { return search.StrValue{Param: v.P, Value: v.V, Exact: v.X} }),
		Tok: conv(b.Tok, func(v bsonTok) search.TokValue {
			return search.TokValue{Param: v.P, System: v.S, Code: v.C, Text: v.T, TypeSystem: v.TS, TypeCode: v.TC}
		}),
		Ref: conv(b.Ref, func(v bsonRef) search.RefValue {
			return search.RefValue{Param: v.P, Ref: v.R, Type: v.T, ID: v.I, Version: v.V, IDSystem: v.IS, IDValue: v.IC}
		}),
		Date: conv(b.Date, func(v bsonDate) search.DateValue { return search.DateValue{Param: v.P, Lo: v.Lo, Hi: v.Hi} }),
		Num:  conv(b.Num, func(v bsonNum) search.NumValue { return search.NumValue{Param: v.P, Value: v.V, Lo: v.Lo, Hi: v.Hi} }),
		Qty: conv(b.Qty, func(v bsonQty) search.QtyValue {
			return search.QtyValue{Param: v.P, Value: v.V, Lo: v.Lo, Hi: v.Hi, System: v.S, Code: v.C, Unit: v.U}
		}),
		URI:          conv(b.URI, func(v bsonURI) search.URIValue { return search.URIValue{Param: v.P, Value: v.V} }),
		Comp:         conv(b.Comp, func(v bsonComp) search.CompValue { return search.CompValue{Param: v.P, Parts: FromBSON(v.X)} }),
		Has:          b.Has,
		Compartments: b.Compartments,
		Security:     b.Security,
		Sort:         b.Sort,
	}
}

// BSONRelease is a store.Release in the document layout (rel.p, rel.x:
// the release instants the filters of ReleaseCond compare). It converts
// to and from store.Release directly: the fields are the same.
type BSONRelease struct {
	Patient time.Time `bson:"p,omitempty"`
	Proxy   time.Time `bson:"x,omitempty"`
	Rule    string    `bson:"r,omitempty"`
	State   string    `bson:"s,omitempty"`
	By      string    `bson:"b,omitempty"`
	At      time.Time `bson:"a,omitempty"`
	Note    string    `bson:"n,omitempty"`
}

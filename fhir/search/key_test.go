package search

import (
	"testing"
	"time"
)

func TestKeyIgnoresPointers(t *testing.T) {
	code1, code2 := "x", "x"
	a := Or{Args: []Expr{TokenCond{Param: "code", Code: &code1}, &And{Args: []Expr{DateCond{Param: "date", Lo: time.Unix(0, 0)}}}}}
	b := Or{Args: []Expr{TokenCond{Param: "code", Code: &code2}, &And{Args: []Expr{DateCond{Param: "date", Lo: time.Unix(0, 0).In(time.FixedZone("x", 3600))}}}}}
	if Key(a) != Key(b) {
		t.Errorf("equal conditions, different keys:\n%s\n%s", Key(a), Key(b))
	}
	other := "y"
	for _, c := range []Expr{
		Or{Args: []Expr{TokenCond{Param: "code", Code: &other}, &And{Args: []Expr{DateCond{Param: "date", Lo: time.Unix(0, 0)}}}}},
		Or{Args: []Expr{TokenCond{Param: "code"}, &And{Args: []Expr{DateCond{Param: "date", Lo: time.Unix(0, 0)}}}}},
		Or{Args: []Expr{TokenCond{Param: "code", Code: &code1}, And{Args: []Expr{DateCond{Param: "date", Lo: time.Unix(0, 0)}}}}},
		And{Args: a.Args},
		Or{Args: []Expr{StringCond{Param: "code"}, &And{Args: []Expr{DateCond{Param: "date", Lo: time.Unix(0, 0)}}}}},
	} {
		if Key(c) == Key(a) {
			t.Errorf("different conditions, one key %s", Key(c))
		}
	}
}

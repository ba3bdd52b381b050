package mquery

import (
	"fmt"

	"github.com/fhirgate/fhirgate/fhir/search"
)

func errUnsupported(e search.Expr) error { return fmt.Errorf("mquery: unsupported node %T", e) }

// Package deps pins the project's dependencies while packages are being built.
package deps

import (
	_ "github.com/FerretDB/FerretDB/ferretdb"
	_ "github.com/coreos/go-oidc/v3/oidc"
	_ "github.com/gin-gonic/gin"
	_ "github.com/go-jose/go-jose/v4"
	_ "github.com/samply/golang-fhir-models/fhir-models/fhir"
	_ "github.com/santhosh-tekuri/jsonschema/v6"
	_ "github.com/xeipuuv/gojsonschema"
	_ "github.com/zitadel/oidc/v3/pkg/op"
	_ "go.mongodb.org/mongo-driver/v2/mongo"
	_ "gopkg.in/yaml.v3"
)

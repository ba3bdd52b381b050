package fhir

import "github.com/fhirgate/fhirgate/fhir/model"

// ResourceTypes lists every concrete R4 resource type (resourcelist.html),
// sorted: the R4 model's (fhir/model, from the StructureDefinitions of
// hl7.fhir.r4.examples@4.0.1). The abstract types Resource and
// DomainResource are not in it: they are never the value of resourceType.
// fhir/validate checks it against the discriminator mapping of the official
// R4 JSON schema.
var ResourceTypes = model.R4().ResourceTypes()

// IsResourceType reports whether s is the name of a concrete R4 resource type
// (case-sensitive, as resourceType values and URL type segments are; http.html).
func IsResourceType(s string) bool { return model.R4().IsResourceType(s) }

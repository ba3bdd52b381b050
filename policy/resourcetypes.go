package policy

import "github.com/fhirgate/fhirgate/fhir/model"

// r4ResourceTypes is the set of the 146 concrete resource types of FHIR R4
// (4.0.1; resourcelist.html), from the R4 model (fhir/model, generated from
// the StructureDefinitions of hl7.fhir.r4.examples@4.0.1, CC0). The loader
// uses it to catch typos in match.resourceType and in references.
var r4ResourceTypes = setOf(model.R4().ResourceTypes()...)

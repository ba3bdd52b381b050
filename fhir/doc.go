// Package fhir is the bottom layer of fhirgate: the FHIR R4 resource value
// (the JSON a client sent, parsed once into ordered members and a decoded
// tree, json.html), the one hardened JSON parser every body goes through
// (depth, duplicate keys, number literals kept, RFC 8259), the one error
// type whose kind becomes an OperationOutcome in exactly one place
// (operationoutcome.html), the HTTP-free Request and Response of the
// pipeline (http.html), and the R4 resource type list (resourcelist.html),
// taken from the R4 model of fhir/model (structuredefinition.html), the only
// other fhirgate package it imports.
package fhir

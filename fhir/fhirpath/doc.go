// Package fhirpath is fhirgate's FHIRPath engine: one lexer, parser and
// evaluator for FHIRPath (the N1 specification, http://hl7.org/fhirpath/N1,
// as R4 uses it: fhirpath.html) over decoded FHIR JSON. Search parameter
// extraction (searchparameter.html#expression, fhir/search) and FHIRPath
// Patch (fhirpatch.html, fhir/patch) both compile and evaluate their
// expressions with it.
//
// Compile parses an expression once into a tree (Expr); Context.Eval
// evaluates it on a collection of Items. Values are those of the resource
// parser (fhir.ParseJSON): map[string]any, []any, string, bool and
// json.Number, or an ordered tree through the Object interface. Numbers
// stay decimal-exact (number.go): a json.Number is compared and computed by
// its literal's exact value, never through a float64.
//
// The type model (fhir/model, from the R4 StructureDefinitions,
// structuredefinition.html) types each value: choice elements are found by
// their base name (Observation.value selects valueQuantity as a Quantity,
// fhirpath.html#polymorphism), a type name as the first step of a path
// selects the focus when it is of that type, and is / as / ofType accept
// derived types (Age is a Quantity, fhirpath.html#types).
//
// Supported: paths, indexers, literals ('str', numbers, true/false, {},
// @dates), $this, %resource / %rootResource / %context / %ucum / %sct /
// %loinc, the operators | = != ~ !~ < > <= >= + - * / & div mod is as in
// contains and or xor implies and unary minus, and the functions of the
// table in functions.go (Functions lists them). $index and $total, the
// date/time arithmetic and the functions outside the table are not
// implemented; Compile reports them.
//
// Two options serve editing (fhirpatch.html): Context.Track records where
// each selected value is in the tree (Item.Loc), and Context.Strict makes a
// path to an element the type does not define an error
// (fhirpath.html#type-safety-and-strict-evaluation).
package fhirpath

package search

import (
	"slices"
	"strings"
)

// PatientFree lists the R4 resource types that hold no patient data: who
// and where care is given (Practitioner, Organization, Location...), what
// is given (Medication, Substance...), and definitional and conformance
// resources. They are the only types a patient-facing caller may read
// without a link to its patient; every other type is confined to the
// patient compartment computed by Extract (see linkedCompartments), so a
// type added later, or one nobody thought of, fails closed.
var PatientFree = map[string]bool{
	"Practitioner": true, "PractitionerRole": true, "Organization": true, "OrganizationAffiliation": true,
	"Location": true, "HealthcareService": true, "Endpoint": true, "Slot": true, "InsurancePlan": true,
	"Medication": true, "MedicationKnowledge": true, "Substance": true, "SubstanceNucleicAcid": true,
	"SubstancePolymer": true, "SubstanceProtein": true, "SubstanceReferenceInformation": true,
	"SubstanceSourceMaterial": true, "SubstanceSpecification": true, "MedicinalProduct": true,
	"MedicinalProductAuthorization": true, "MedicinalProductContraindication": true,
	"MedicinalProductIndication": true, "MedicinalProductIngredient": true, "MedicinalProductInteraction": true,
	"MedicinalProductManufactured": true, "MedicinalProductPackaged": true, "MedicinalProductPharmaceutical": true,
	"MedicinalProductUndesirableEffect": true, "DeviceDefinition": true, "ObservationDefinition": true,
	"SpecimenDefinition": true, "ActivityDefinition": true, "PlanDefinition": true, "Questionnaire": true,
	"Library": true, "Measure": true, "ValueSet": true, "CodeSystem": true, "ConceptMap": true,
	"NamingSystem": true, "StructureDefinition": true, "StructureMap": true, "CapabilityStatement": true,
	"OperationDefinition": true, "SearchParameter": true, "CompartmentDefinition": true,
	"ImplementationGuide": true, "GraphDefinition": true, "MessageDefinition": true, "EventDefinition": true,
	"ResearchDefinition": true, "ResearchElementDefinition": true, "EffectEvidenceSynthesis": true,
	"RiskEvidenceSynthesis": true, "Evidence": true, "EvidenceVariable": true, "TerminologyCapabilities": true,
	"TestScript": true, "ExampleScenario": true, "ChargeItemDefinition": true, "CatalogEntry": true,
}

// MultiPatientLabel is the security label ("system|code") Extract gives a
// resource of a type outside the Patient CompartmentDefinition that
// carries the data of more than one patient (a Bundle with entries of
// several patients): no patient-facing caller may see it, since it would
// show each patient the others' data.
const MultiPatientLabel = "http://fhirgate.dev/CodeSystem/access|multi-patient"

// BinaryLinkParam is the internal reference parameter under which
// Extract records every Attachment.url that points at a Binary of this
// server ("Binary/123"), so the resources that carry a Binary can be
// found (the Binary's link to a patient when it has no securityContext).
// It is no search parameter a client can use.
const BinaryLinkParam = "_binary"

// compartments fills Index.Compartments (compartmentdefinition.html): a
// resource is in the compartment of every Patient that one of its
// compartment parameters (CompartmentDefinition-patient) references, and a
// Patient is in its own compartment. Types outside every patient
// compartment that can still carry patient data are linked by what names
// a patient (linkedCompartments).
func (x *extractor) compartments(resourceType string, resource map[string]any, params []string) {
	if resourceType == "Patient" {
		if id, _ := resource["id"].(string); id != "" {
			x.addCompartment("Patient/" + id)
		}
	}
	x.binaryLinks(resource, 0)
	if len(params) == 0 && resourceType != "Patient" {
		x.linkedCompartments(resourceType, resource)
		return
	}
	for _, v := range x.idx.Ref {
		if v.Type == "Patient" && v.ID != "" && slices.Contains(params, v.Param) {
			x.addCompartment("Patient/" + v.ID)
		}
	}
}

func (x *extractor) addCompartment(c string) {
	if !slices.Contains(x.idx.Compartments, c) {
		x.idx.Compartments = append(x.idx.Compartments, c)
	}
}

// linkedCompartments links a resource of a type outside the Patient
// CompartmentDefinition to the patients it carries data of:
//   - any search parameter referencing a Patient (Task.for and .owner,
//     Device.patient, Contract.subject, GuidanceResponse.subject...);
//   - Binary.securityContext when it is a Patient (a Binary whose
//     securityContext is another resource follows that resource: the
//     server resolves it, as it needs the store);
//   - a Bundle is in the compartments of its entries, and carries their
//     security labels (a document Bundle of an HIV result is as sensitive
//     as the result).
func (x *extractor) linkedCompartments(resourceType string, resource map[string]any) {
	if PatientFree[resourceType] {
		return
	}
	for _, v := range x.idx.Ref {
		if v.Type == "Patient" && v.ID != "" && v.Param != BinaryLinkParam {
			x.addCompartment("Patient/" + v.ID)
		}
	}
	switch resourceType {
	case "Binary":
		if sc, ok := resource["securityContext"].(map[string]any); ok {
			if ref, _ := sc["reference"].(string); strings.HasPrefix(ref, "Patient/") && !strings.Contains(ref[len("Patient/"):], "/") {
				x.addCompartment(ref)
			}
		}
	case "Bundle":
		for _, e := range maps(resource, "entry") {
			res, ok := e["resource"].(map[string]any)
			if !ok {
				continue
			}
			typ, _ := res["resourceType"].(string)
			if typ == "" || !x.r.IsResourceType(typ) {
				continue
			}
			sub, err := x.r.extract(typ, res, false)
			if err != nil {
				continue
			}
			for _, c := range sub.idx.Compartments {
				x.addCompartment(c)
			}
			for _, l := range sub.idx.Security {
				if !slices.Contains(x.idx.Security, l) {
					x.idx.Security = append(x.idx.Security, l)
				}
			}
		}
	}
	if len(x.idx.Compartments) > 1 && !slices.Contains(x.idx.Security, MultiPatientLabel) {
		x.idx.Security = append(x.idx.Security, MultiPatientLabel)
	}
}

// binaryID is the id of a Binary that url points at: "Binary/123", or an
// absolute URL ending in "/Binary/123" (this server's base is not known
// here; counting another server's Binary as a link only makes the
// decisions that use links stricter).
func binaryID(url string) (string, bool) {
	i := strings.LastIndex(url, "Binary/")
	if i < 0 || i > 0 && url[i-1] != '/' {
		return "", false
	}
	id := url[i+len("Binary/"):]
	if j := strings.Index(id, "/_history/"); j > 0 {
		id = id[:j]
	}
	if id == "" || strings.ContainsAny(id, "/?#") {
		return "", false
	}
	return id, true
}

// binaryLinks records, under BinaryLinkParam, every "url" element whose
// value is a relative reference to a Binary ("Binary/123": Attachment.url
// of DocumentReference.content, Media.content, DiagnosticReport.presentedForm,
// Communication.payload...). depth bounds the walk like the JSON parser.
func (x *extractor) binaryLinks(v any, depth int) {
	if depth > 64 {
		return
	}
	switch t := v.(type) {
	case map[string]any:
		for k, c := range t {
			if s, ok := c.(string); ok && k == "url" {
				if id, ok := binaryID(s); ok {
					ref := RefValue{Param: BinaryLinkParam, Ref: "Binary/" + id, Type: "Binary", ID: id}
					if !slices.Contains(x.idx.Ref, ref) {
						x.idx.Ref = append(x.idx.Ref, ref)
					}
				}
				continue
			}
			if _, ok := c.(string); !ok {
				x.binaryLinks(c, depth+1)
			}
		}
	case []any:
		for _, c := range t {
			x.binaryLinks(c, depth+1)
		}
	}
}

// security fills Index.Security with meta.security and, where the resource
// type has it, securityLabel codings as "system|code"
// (security-labels.html).
func (x *extractor) security(resource map[string]any) {
	add := func(c map[string]any) {
		code := str(c, "code")
		if code == "" {
			return
		}
		label := str(c, "system") + "|" + code
		if !slices.Contains(x.idx.Security, label) {
			x.idx.Security = append(x.idx.Security, label)
		}
	}
	if meta, ok := resource["meta"].(map[string]any); ok {
		for _, c := range maps(meta, "security") {
			add(c)
		}
	}
	for _, c := range maps(resource, "securityLabel") {
		if _, ok := c["coding"]; ok {
			for _, cc := range maps(c, "coding") {
				add(cc)
			}
			continue
		}
		add(c)
	}
}

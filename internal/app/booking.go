package app

import (
	"context"
	"net/http"

	"github.com/fhirgate/fhirgate/fhir/search"
)

// startBooking starts the service (placeholder until its issue part lands).
func (a *App) startBooking(ctx context.Context, extra map[string]http.Handler) error { return nil }

// BookingOptions configure the service (Options.Booking); BookingFromEnv reads them
// from FHIRGATE_* variables (cmd/fhirgate wires it).
type BookingOptions struct{}

// BookingFromEnv reads BookingOptions from the environment.
func BookingFromEnv(getenv func(string) string) (BookingOptions, error) { return BookingOptions{}, nil }

// withBookingParams adds the service's search parameters to the registry
// (search.LoadCustom), e.g. a worklist's due date.
func withBookingParams(reg *search.Registry) (*search.Registry, error) { return reg, nil }

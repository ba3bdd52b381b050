// Package mongoutil is what the services' MongoDB storages
// (authz/mongostore, authz/visit/mongostore, notify/mongostore,
// portal/export/mongostore) share to keep their collections beside the
// FHIR store's in one database (MongoDB or the embedded FerretDB):
// connecting and opening a storage, disconnecting the client it
// connected, and creating indexes one at a time.
package mongoutil

import (
	"context"
	"fmt"
	"time"

	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// Conn is the client a storage connected itself (Open); a storage embeds
// it. The zero value holds none: a storage made on a database it was
// given (its New) leaves that database's client to its owner.
type Conn struct {
	client *mongo.Client
}

func (c *Conn) attach(client *mongo.Client) { c.client = client }

// Close disconnects the client Open connected (nil when there is none).
func (c *Conn) Close() error { return c.CloseWithin(0) }

// CloseWithin is Close bounded by timeout (0: unbounded).
func (c *Conn) CloseWithin(timeout time.Duration) error {
	if c.client == nil {
		return nil
	}
	ctx := context.Background()
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	return c.client.Disconnect(ctx)
}

// owner is a storage that embeds Conn.
type owner interface{ attach(*mongo.Client) }

// Open connects to uri and opens a storage in database with newStorage
// (the storage's New); the storage then owns the client (Conn.Close
// disconnects it). When newStorage fails the client is disconnected and
// its error returned as it is; a failed connect is "<what>: connect: ...".
func Open[S owner](ctx context.Context, uri, database, what string, newStorage func(context.Context, *mongo.Database) (S, error)) (S, error) {
	var none S
	client, err := mongo.Connect(options.Client().ApplyURI(uri))
	if err != nil {
		return none, fmt.Errorf("%s: connect: %w", what, err)
	}
	s, err := newStorage(ctx, client.Database(database))
	if err != nil {
		_ = client.Disconnect(context.WithoutCancel(ctx))
		return none, err
	}
	s.attach(client)
	return s, nil
}

// CreateIndexes creates the indexes of c that are missing, one
// createIndexes command per index, in order: FerretDB v1.24 drops the
// connection (or panics) when one createIndexes names several indexes of
// which some exist already. The first failure is returned as it is.
func CreateIndexes(ctx context.Context, c *mongo.Collection, models ...mongo.IndexModel) error {
	for _, m := range models {
		if _, err := c.Indexes().CreateOne(ctx, m); err != nil {
			return err
		}
	}
	return nil
}

// Collection is db's collection name with its indexes created
// (CreateIndexes).
func Collection(ctx context.Context, db *mongo.Database, name string, models ...mongo.IndexModel) (*mongo.Collection, error) {
	c := db.Collection(name)
	if err := CreateIndexes(ctx, c, models...); err != nil {
		return nil, err
	}
	return c, nil
}

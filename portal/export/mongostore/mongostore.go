// Package mongostore keeps Bulk Data export jobs (export.Storage) in the
// store's MongoDB database (or the embedded FerretDB): the collection
// export_jobs, one document per job (_id the job id, status, created as
// Unix nanoseconds, the job as a JSON string in data). Put is a
// replaceOne without upsert, so a job deleted (cancelled) meanwhile is
// not brought back.
package mongostore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/fhirgate/fhirgate/portal/export"
	"github.com/fhirgate/fhirgate/store/mongo/mongoutil"
)

// Collection is the collection's name.
const Collection = "export_jobs"

// Store is export.Storage on MongoDB.
type Store struct {
	mongoutil.Conn // the client Open connected (none when New was given a database)
	c              *mongo.Collection
}

var _ export.Storage = (*Store)(nil)

type doc struct {
	ID      string `bson:"_id"`
	Status  string `bson:"status"`
	Created int64  `bson:"created"`
	Data    string `bson:"data"`
}

// Open connects to uri and opens the store in database (Close
// disconnects).
func Open(ctx context.Context, uri, database string) (*Store, error) {
	return mongoutil.Open(ctx, uri, database, "export mongostore", New)
}

// New opens the store in db, creating its index if needed.
func New(ctx context.Context, db *mongo.Database) (*Store, error) {
	c, err := mongoutil.Collection(ctx, db, Collection,
		mongo.IndexModel{Keys: bson.D{{Key: "created", Value: 1}}, Options: options.Index().SetName("created")})
	if err != nil {
		return nil, fmt.Errorf("export mongostore: indexes: %w", err)
	}
	return &Store{c: c}, nil
}

// Collection returns the collection (tests).
func (s *Store) Collection() *mongo.Collection { return s.c }

func encode(j export.Job) (doc, error) {
	b, err := json.Marshal(j)
	if err != nil {
		return doc{}, fmt.Errorf("export mongostore: encode: %w", err)
	}
	return doc{ID: j.ID, Status: j.Status, Created: j.Created.UnixNano(), Data: string(b)}, nil
}

func decode(d doc) (export.Job, error) {
	var j export.Job
	if err := json.Unmarshal([]byte(d.Data), &j); err != nil {
		return j, fmt.Errorf("export mongostore: decode: %w", err)
	}
	return j, nil
}

// Create stores a new job.
func (s *Store) Create(ctx context.Context, j export.Job) error {
	d, err := encode(j)
	if err != nil {
		return err
	}
	if _, err := s.c.InsertOne(ctx, d); err != nil {
		return fmt.Errorf("export mongostore: create: %w", err)
	}
	return nil
}

// Get reads a job.
func (s *Store) Get(ctx context.Context, id string) (export.Job, error) {
	var d doc
	err := s.c.FindOne(ctx, bson.D{{Key: "_id", Value: id}}).Decode(&d)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return export.Job{}, export.ErrNotFound
	}
	if err != nil {
		return export.Job{}, fmt.Errorf("export mongostore: get: %w", err)
	}
	return decode(d)
}

// Put replaces an existing job.
func (s *Store) Put(ctx context.Context, j export.Job) error {
	d, err := encode(j)
	if err != nil {
		return err
	}
	res, err := s.c.ReplaceOne(ctx, bson.D{{Key: "_id", Value: j.ID}}, d)
	if err != nil {
		return fmt.Errorf("export mongostore: put: %w", err)
	}
	if res.MatchedCount == 0 {
		return export.ErrNotFound
	}
	return nil
}

// Delete removes a job.
func (s *Store) Delete(ctx context.Context, id string) error {
	if _, err := s.c.DeleteOne(ctx, bson.D{{Key: "_id", Value: id}}); err != nil {
		return fmt.Errorf("export mongostore: delete: %w", err)
	}
	return nil
}

// List returns every job, oldest first.
func (s *Store) List(ctx context.Context) ([]export.Job, error) {
	cur, err := s.c.Find(ctx, bson.D{}, options.Find().SetSort(bson.D{{Key: "created", Value: 1}, {Key: "_id", Value: 1}}))
	if err != nil {
		return nil, fmt.Errorf("export mongostore: list: %w", err)
	}
	defer cur.Close(ctx)
	var out []export.Job
	for cur.Next(ctx) {
		var d doc
		if err := cur.Decode(&d); err != nil {
			return nil, fmt.Errorf("export mongostore: list: %w", err)
		}
		j, err := decode(d)
		if err != nil {
			return nil, err
		}
		out = append(out, j)
	}
	if err := cur.Err(); err != nil {
		return nil, fmt.Errorf("export mongostore: list: %w", err)
	}
	return out, nil
}

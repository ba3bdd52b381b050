package main

// Transaction atomicity across kill -9 (http.html#transaction: "all
// succeed or all fail"): the real binary on the embedded store is killed
// while clients post transaction Bundles; after each restart every Bundle
// is either fully present or fully absent.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

type proc struct {
	cmd  *exec.Cmd
	base string
}

func startServer(t *testing.T, bin, dir, addr, storeKind string) *proc {
	t.Helper()
	cmd := exec.Command(bin, "serve")
	cmd.Env = binaryEnv(addr, dir, "FHIRGATE_AUTH_DISABLED=true", "FHIRGATE_STORE="+storeKind)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	if !waitReady(addr) {
		_ = cmd.Process.Kill()
		t.Fatalf("server did not become ready: %s", stderr.String())
	}
	return &proc{cmd: cmd, base: "http://" + addr + "/fhir"}
}

// bundle k holds n Observations tagged k and a Patient tagged k.
func crashBundle(k, n int) []byte {
	var es []string
	tag := fmt.Sprintf(`"meta":{"tag":[{"system":"http://fhirgate.test/bundle","code":"b%d"}]}`, k)
	es = append(es, `{"fullUrl":"urn:uuid:00000000-0000-0000-0000-000000000001","resource":{"resourceType":"Patient",`+tag+`,"active":true},"request":{"method":"POST","url":"Patient"}}`)
	for i := 0; i < n; i++ {
		es = append(es, fmt.Sprintf(`{"resource":{"resourceType":"Observation",%s,"status":"final","code":{"text":"c%d"},"subject":{"reference":"urn:uuid:00000000-0000-0000-0000-000000000001"}},"request":{"method":"POST","url":"Observation"}}`, tag, i))
	}
	return []byte(`{"resourceType":"Bundle","type":"transaction","entry":[` + strings.Join(es, ",") + `]}`)
}

func countTagged(t *testing.T, base string, k int) int {
	t.Helper()
	total := 0
	for _, typ := range []string{"Patient", "Observation"} {
		r, err := http.Get(fmt.Sprintf("%s/%s?_tag=http://fhirgate.test/bundle|b%d&_summary=count", base, typ, k))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(r.Body)
		r.Body.Close()
		var m struct{ Total *int }
		if err := json.Unmarshal(b, &m); err != nil || m.Total == nil {
			t.Fatalf("count: %s", b)
		}
		total += *m.Total
	}
	return total
}

// TestKillNineTransactions runs on both embedded stores: SQLite (the
// default; one SQLite transaction per Bundle) and FerretDB (store/mongo's
// journal).
func TestKillNineTransactions(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and kills the real binary")
	}
	bin := buildBinary(t)
	for _, kind := range []string{"sqlite", "ferretdb"} {
		t.Run(kind, func(t *testing.T) { killNine(t, bin, kind) })
	}
}

func killNine(t *testing.T, bin, storeKind string) {
	dir := t.TempDir()
	addr := freeAddr(t)
	const perBundle = 20
	kills := 12
	next := 0
	rng := rand.New(rand.NewPCG(1, 2))
	committed := map[int]bool{} // answered 200 before the kill: must be present
	sent := 0
	for round := 0; round < kills; round++ {
		p := startServer(t, bin, dir, addr, storeKind)
		var mu sync.Mutex
		stop := make(chan struct{})
		var wg sync.WaitGroup
		for w := 0; w < 3; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					select {
					case <-stop:
						return
					default:
					}
					mu.Lock()
					k := next
					next++
					mu.Unlock()
					resp, err := http.Post(p.base, "application/fhir+json", bytes.NewReader(crashBundle(k, perBundle)))
					if err != nil {
						return
					}
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode == 200 {
						mu.Lock()
						committed[k] = true
						mu.Unlock()
					}
				}
			}()
		}
		time.Sleep(time.Duration(150+rng.IntN(500)) * time.Millisecond)
		_ = p.cmd.Process.Signal(syscall.SIGKILL)
		_ = p.cmd.Wait()
		close(stop)
		wg.Wait()
		mu.Lock()
		sent = next
		mu.Unlock()
	}
	p := startServer(t, bin, dir, addr, storeKind)
	defer func() { _ = p.cmd.Process.Kill(); _ = p.cmd.Wait() }()
	full, absent := 0, 0
	for k := 0; k < sent; k++ {
		n := countTagged(t, p.base, k)
		switch n {
		case 0:
			absent++
			if committed[k] {
				t.Errorf("bundle %d was answered 200 but is absent after restart", k)
			}
		case perBundle + 1:
			full++
		default:
			t.Errorf("bundle %d is partially present: %d of %d resources", k, n, perBundle+1)
		}
	}
	t.Logf("%d kills, %d bundles sent: %d fully present, %d absent", kills, sent, full, absent)
	if full == 0 {
		t.Error("no bundle committed: the test measured nothing")
	}
}

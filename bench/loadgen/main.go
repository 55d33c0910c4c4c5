// loadgen posts one body to one HTTPS URL from C keep-alive connections for a fixed time and prints
// throughput and latency percentiles as JSON. It is written in Go so that the load generator costs far
// less CPU than the Python server it measures on a 2-core machine.
package main

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"sync"
	"time"
)

func main() {
	url := flag.String("url", "", "URL to POST to")
	bodyFile := flag.String("body", "", "file with the request body")
	caFile := flag.String("ca", "", "CA certificate to trust")
	concurrency := flag.Int("c", 16, "concurrent keep-alive connections")
	duration := flag.Duration("d", 5*time.Second, "how long to send")
	warmup := flag.Duration("warmup", time.Second, "sent first and not counted")
	flag.Parse()

	body, err := os.ReadFile(*bodyFile)
	check(err)
	pool := x509.NewCertPool()
	pem, err := os.ReadFile(*caFile)
	check(err)
	pool.AppendCertsFromPEM(pem)
	transport := &http.Transport{
		TLSClientConfig:     &tls.Config{RootCAs: pool},
		MaxIdleConnsPerHost: *concurrency,
		MaxConnsPerHost:     *concurrency,
	}
	client := &http.Client{Transport: transport, Timeout: 10 * time.Second}

	var mu sync.Mutex
	var latencies []time.Duration
	errors := 0
	start := time.Now()
	measureFrom := start.Add(*warmup)
	stop := measureFrom.Add(*duration)
	var wg sync.WaitGroup
	for i := 0; i < *concurrency; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mine []time.Duration
			failed := 0
			for {
				began := time.Now()
				if began.After(stop) {
					break
				}
				resp, err := client.Post(*url, "application/json", bytes.NewReader(body))
				if err == nil {
					_, err = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != 200 {
						err = fmt.Errorf("status %d", resp.StatusCode)
					}
				}
				if began.Before(measureFrom) {
					continue
				}
				if err != nil {
					failed++
					continue
				}
				mine = append(mine, time.Since(began))
			}
			mu.Lock()
			latencies = append(latencies, mine...)
			errors += failed
			mu.Unlock()
		}()
	}
	wg.Wait()
	sort.Slice(latencies, func(a, b int) bool { return latencies[a] < latencies[b] })
	pct := func(p float64) float64 {
		if len(latencies) == 0 {
			return 0
		}
		i := int(p * float64(len(latencies)-1))
		return float64(latencies[i].Microseconds()) / 1000
	}
	out := map[string]any{
		"concurrency": *concurrency,
		"requests":    len(latencies),
		"errors":      errors,
		"seconds":     duration.Seconds(),
		"rps":         float64(len(latencies)) / duration.Seconds(),
		"p50_ms":      pct(0.50),
		"p99_ms":      pct(0.99),
	}
	check(json.NewEncoder(os.Stdout).Encode(out))
}

func check(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

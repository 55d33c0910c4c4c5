// loadgen posts one body to one HTTPS URL from C keep-alive connections for a fixed time and prints
// throughput and latency percentiles as JSON. It is written in Go so that the load generator costs far
// less CPU than the Python server it measures on a 2-core machine.
package main

import (
	"bufio"
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
	"strings"
	"sync"
	"syscall"
	"time"
)

func main() {
	url := flag.String("url", "", "URL to POST to")
	bodyFile := flag.String("body", "", "file with the request body")
	caFile := flag.String("ca", "", "CA certificate to trust")
	concurrency := flag.Int("c", 16, "concurrent keep-alive connections")
	duration := flag.Duration("d", 5*time.Second, "how long to send")
	warmup := flag.Duration("warmup", time.Second, "sent first and not counted")
	stream := flag.Bool("stream", false, "read SSE streams: count tokens and time to first token")
	hold := flag.Int("hold", 0, "open this many streams, report when all got their 200, keep them for -d")
	auth := flag.String("auth", "", "Authorization header value, e.g. 'Bearer sk-...'")
	wakeN := flag.Int("wake", 0, "hold this many streams on a model at zero, one every -gap, and time their first tokens")
	gap := flag.Duration("gap", 2*time.Millisecond, "with -wake: time between two clients")
	health := flag.String("health", "", "with -wake: the model's health URL, watched to know when it became ready")
	flag.Parse()
	raiseFileLimit()
	if *wakeN > 0 {
		wake(*url, *bodyFile, *health, *auth, *wakeN, *gap)
		return
	}
	if *stream || *hold > 0 {
		streaming(*url, *bodyFile, *auth, *concurrency, *duration, *warmup, *hold)
		return
	}

	body, err := os.ReadFile(*bodyFile)
	check(err)
	pool := x509.NewCertPool()
	if *caFile != "" {
		pem, err := os.ReadFile(*caFile)
		check(err)
		pool.AppendCertsFromPEM(pem)
	}
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

func raiseFileLimit() {
	var limit syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &limit) == nil {
		limit.Cur = limit.Max
		_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &limit)
	}
}

// streaming posts streaming completions: each worker reads the SSE answer line by line, timing the first
// content chunk and counting chunks (tokens) until [DONE]. With -hold N it opens N streams at once, reports
// when every one has its 200 (the held clients of a cold start), and keeps them open for -d.
func streaming(url, bodyFile, auth string, concurrency int, duration, warmup time.Duration, hold int) {
	body, err := os.ReadFile(bodyFile)
	check(err)
	workers := concurrency
	if hold > 0 {
		workers = hold
	}
	transport := &http.Transport{MaxIdleConnsPerHost: workers, MaxConnsPerHost: workers, DisableCompression: true}
	client := &http.Client{Transport: transport}
	var mu sync.Mutex
	var ttfts []time.Duration
	tokens, streams, errors := 0, 0, 0
	firstError := ""
	start := time.Now()
	measureFrom := start.Add(warmup)
	stop := measureFrom.Add(duration)
	var opened sync.WaitGroup
	opened.Add(workers)
	var wg sync.WaitGroup
	for i := 0; i < workers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			once := sync.Once{}
			markOpened := func() { once.Do(opened.Done) }
			defer markOpened()
			for {
				began := time.Now()
				if hold == 0 && began.After(stop) {
					return
				}
				resp, err := client.Do(post(url, body, auth))
				if err != nil || resp.StatusCode != 200 {
					reason := ""
					if err != nil {
						reason = err.Error()
					} else {
						reason = fmt.Sprintf("status %d", resp.StatusCode)
						resp.Body.Close()
					}
					mu.Lock()
					errors++
					if firstError == "" {
						firstError = reason
					}
					mu.Unlock()
					time.Sleep(10 * time.Millisecond) // a failing target is not a benchmark: do not spin
					if hold > 0 {
						return
					}
					continue
				}
				if hold > 0 {
					markOpened()
					time.Sleep(time.Until(start.Add(duration)))
					resp.Body.Close()
					return
				}
				reader := bufio.NewReader(resp.Body)
				var first time.Duration
				count := 0
				for {
					line, err := reader.ReadString('\n')
					if strings.HasPrefix(line, "data: ") && !strings.HasPrefix(line, "data: [DONE]") {
						if count == 0 {
							first = time.Since(began)
						}
						count++
					}
					if err != nil {
						break
					}
				}
				resp.Body.Close()
				if began.Before(measureFrom) {
					continue
				}
				mu.Lock()
				ttfts = append(ttfts, first)
				tokens += count
				streams++
				mu.Unlock()
			}
		}()
	}
	if hold > 0 {
		opened.Wait()
		fmt.Printf("{\"opened\": %d, \"errors\": %d, \"seconds\": %.3f}\n", hold-errors, errors, time.Since(start).Seconds())
		os.Stdout.Sync()
		wg.Wait()
		return
	}
	wg.Wait()
	sort.Slice(ttfts, func(a, b int) bool { return ttfts[a] < ttfts[b] })
	pct := func(p float64) float64 {
		if len(ttfts) == 0 {
			return 0
		}
		return float64(ttfts[int(p*float64(len(ttfts)-1))].Microseconds()) / 1000
	}
	out := map[string]any{
		"concurrency": concurrency, "streams": streams, "tokens": tokens, "errors": errors,
		"tokens_per_s": float64(tokens) / duration.Seconds(), "ttft_p50_ms": pct(0.5), "ttft_p99_ms": pct(0.99),
		"first_error": firstError,
	}
	check(json.NewEncoder(os.Stdout).Encode(out))
}

// post is one JSON request of the load, with the Authorization header when one is given.
func post(url string, body []byte, auth string) *http.Request {
	req, err := http.NewRequest("POST", url, bytes.NewReader(body))
	check(err)
	req.Header.Set("Content-Type", "application/json")
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	return req
}

package main

import (
	"bufio"
	"encoding/json"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"
)

// wake holds n streaming clients on a model at zero, sent one every gap (so their arrival order is known),
// and watches the model's health URL every 2 ms. It prints, in Unix nanoseconds, when the health URL first
// answered 200 and when each client (in sending order) got its first data event, plus how many streams
// ended with [DONE]. The caller computes latencies after readiness and how well arrival order was kept.
func wake(url, bodyFile, health, auth string, n int, gap time.Duration) {
	body, err := os.ReadFile(bodyFile)
	check(err)
	transport := &http.Transport{MaxIdleConnsPerHost: n, MaxConnsPerHost: n, DisableCompression: true}
	client := &http.Client{Transport: transport}
	readyNs := int64(0)
	done := make(chan struct{})
	go func() {
		if health == "" {
			return // no health URL: ready_ns stays 0
		}
		probe := &http.Client{Timeout: time.Second}
		for {
			select {
			case <-done:
				return
			default:
			}
			if resp, err := probe.Get(health); err == nil {
				resp.Body.Close()
				if resp.StatusCode == 200 {
					readyNs = time.Now().UnixNano()
					return
				}
			}
			time.Sleep(2 * time.Millisecond)
		}
	}()
	first := make([]int64, n)
	complete, errors := 0, 0
	firstError := ""
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			resp, err := client.Do(post(url, body, auth))
			ok := false
			reason := ""
			if err != nil {
				reason = err.Error()
			} else {
				reader := bufio.NewReader(resp.Body)
				for {
					line, err := reader.ReadString('\n')
					if strings.HasPrefix(line, "data: [DONE]") {
						ok = true
					} else if strings.HasPrefix(line, "data: ") && first[i] == 0 {
						first[i] = time.Now().UnixNano()
					}
					if err != nil {
						break
					}
				}
				resp.Body.Close()
				if !ok {
					reason = "stream ended without [DONE]"
				}
			}
			mu.Lock()
			if ok {
				complete++
			} else {
				errors++
				if firstError == "" {
					firstError = reason
				}
			}
			mu.Unlock()
		}(i)
		time.Sleep(gap)
	}
	wg.Wait()
	close(done)
	out := map[string]any{
		"ready_ns": readyNs, "first_ns": first, "complete": complete, "errors": errors, "first_error": firstError,
	}
	check(json.NewEncoder(os.Stdout).Encode(out))
}

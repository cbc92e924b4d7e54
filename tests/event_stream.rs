//! `GET /events/stream` over real HTTP: a client that disconnects and resumes with
//! `Last-Event-ID` while commands keep arriving receives every event of the log
//! exactly once, in order, each exactly as `GET /events` shows it; filters apply on the
//! host while ids stay positions; bad parameters are a 400 with the JSON error body
//! before any stream starts; and an open stream does not hold up a shutdown.

use std::time::Duration;

use crate::common::{Api, Reply, TestHost, plugins};
use anyhow::{Context, Result, bail};
use bytes::BytesMut;
use serde_json::{Value, json};

/// The longest a read waits for the next message: generous, for a loaded machine.
const PATIENCE: Duration = Duration::from_secs(60);

/// One server-sent message.
#[derive(Debug, Clone)]
struct Message {
    id: Option<String>,
    event: Option<String>,
    data: String,
}

/// A client's view of one `GET /events/stream` response, read chunk by chunk: the SSE
/// wire format parsed by hand (lines `field: value`, messages ended by a blank line,
/// `:` comments).
struct Sse {
    response: reqwest::Response,
    buffer: BytesMut,
}

impl Sse {
    async fn open(host: &TestHost, query: &str, last_event_id: Option<u64>) -> Result<Sse> {
        let mut request = host
            .client
            .get(format!("{}/events/stream{query}", host.url))
            .header("accept", "text/event-stream");
        if let Some(id) = last_event_id {
            request = request.header("last-event-id", id.to_string());
        }
        let response = request.send().await?;
        anyhow::ensure!(
            response.status() == 200,
            "stream refused: {} {}",
            response.status(),
            response.text().await.unwrap_or_default()
        );
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        anyhow::ensure!(
            content_type.starts_with("text/event-stream"),
            "{content_type}"
        );
        Ok(Sse {
            response,
            buffer: BytesMut::new(),
        })
    }

    /// The next message (comments skipped); none when the stream ended.
    async fn next(&mut self) -> Result<Option<Message>> {
        loop {
            if let Some(end) = find_blank_line(&self.buffer) {
                let raw = self.buffer.split_to(end.0);
                let _ = self.buffer.split_to(end.1);
                if let Some(message) = parse(&String::from_utf8(raw.to_vec())?) {
                    return Ok(Some(message));
                }
                continue;
            }
            match tokio::time::timeout(PATIENCE, self.response.chunk())
                .await
                .context("no message within the patience")??
            {
                Some(chunk) => self.buffer.extend_from_slice(&chunk),
                None => return Ok(None),
            }
        }
    }

    /// The next message, which must be an event; returns its id and the event JSON.
    async fn next_event(&mut self) -> Result<(u64, Value)> {
        let message = self.next().await?.context("the stream ended")?;
        if message.event.is_some() {
            bail!("expected an event, got {message:?}");
        }
        let id: u64 = message.id.context("an event without an id")?.parse()?;
        Ok((id, serde_json::from_str(&message.data)?))
    }
}

/// Where the first blank line ends a message: (the message's length, the separator's).
fn find_blank_line(buffer: &[u8]) -> Option<(usize, usize)> {
    let text = buffer;
    (0..text.len()).find_map(|i| {
        if text[i..].starts_with(b"\n\n") {
            Some((i, 2))
        } else if text[i..].starts_with(b"\r\n\r\n") {
            Some((i, 4))
        } else {
            None
        }
    })
}

/// A message's fields; none for a block of comments only (a keep-alive).
fn parse(block: &str) -> Option<Message> {
    let mut message = Message {
        id: None,
        event: None,
        data: String::new(),
    };
    let mut any = false;
    for line in block.lines() {
        if line.starts_with(':') {
            continue;
        }
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        any = true;
        match field {
            "id" => message.id = Some(value.to_string()),
            "event" => message.event = Some(value.to_string()),
            "data" => {
                if !message.data.is_empty() {
                    message.data.push('\n');
                }
                message.data.push_str(value);
            }
            _ => {}
        }
    }
    any.then_some(message)
}

async fn bank() -> TestHost {
    TestHost::start(&[plugins::BANK_ACCOUNT])
        .await
        .expect("host starts")
}

/// Opens `accounts` accounts named `{prefix}{n}` and deposits into each `deposits`
/// times, over HTTP, from one task; returns the task.
fn keep_sending(
    host: &TestHost,
    prefix: &'static str,
    accounts: usize,
    deposits: usize,
) -> tokio::task::JoinHandle<Result<()>> {
    let client = host.client.clone();
    let url = host.url.clone();
    tokio::spawn(async move {
        for round in 0..=deposits {
            for n in 0..accounts {
                let id = format!("{prefix}{n}");
                let (name, payload) = if round == 0 {
                    ("open-account", json!({ "owner": "ada" }))
                } else {
                    ("deposit", json!({ "amount": round }))
                };
                let reply = Api::of(&client, &url)
                    .send(
                        name,
                        &json!({ "aggregate_id": id, "payload": payload }),
                        &[],
                    )
                    .await?;
                anyhow::ensure!(reply.status == 200, "{name} {id}: {}", reply.body);
            }
        }
        Ok(())
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_client_that_resumes_gets_every_event_once_in_order_while_commands_arrive() {
    let mut host = bank().await;
    const ACCOUNTS: usize = 8;
    const DEPOSITS: usize = 30;
    const TOTAL: usize = ACCOUNTS * (1 + DEPOSITS);
    let sender = keep_sending(&host, "r-", ACCOUNTS, DEPOSITS);
    let mut received: Vec<(u64, Value)> = Vec::new();
    // Connect, take a few events, hang up; resume from the last id; again and again,
    // while the commands keep coming. The first connection asks for the whole log.
    // No read waits for more events than the sender sends in all.
    let mut stream = Sse::open(&host, "?after=0", None).await.unwrap();
    let mut resumed_while_sending = 0;
    loop {
        for _ in 0..17.min(TOTAL - received.len()) {
            received.push(stream.next_event().await.unwrap());
        }
        if received.len() == TOTAL {
            break;
        }
        drop(stream);
        if !sender.is_finished() {
            resumed_while_sending += 1;
        }
        let last = received.last().map(|(id, _)| *id);
        stream = Sse::open(&host, "", last).await.unwrap();
    }
    sender.await.unwrap().unwrap();
    assert!(
        resumed_while_sending > 0,
        "no resume happened while commands were arriving"
    );
    let log = host.read_log().await.unwrap();
    assert_eq!(log.len(), TOTAL);
    let ids: Vec<u64> = received.iter().map(|(id, _)| *id).collect();
    let positions: Vec<u64> = log
        .iter()
        .map(|e| e["position"].as_u64().unwrap())
        .collect();
    assert_eq!(ids, positions, "each position once, in order");
    for ((id, event), logged) in received.iter().zip(&log) {
        assert_eq!(event, logged, "event {id} differs from GET /events");
    }
    // An open stream (waiting at the head) ends when the host shuts down, and the
    // shutdown does not wait for it.
    let waiting = tokio::spawn(async move { stream.next().await.map(|m| m.is_none()) });
    host.shutdown().await;
    assert!(
        tokio::time::timeout(PATIENCE, waiting)
            .await
            .expect("the stream ends")
            .unwrap()
            .unwrap(),
        "the stream ended with no more messages"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn by_default_a_stream_starts_at_the_head() {
    let host = bank().await;
    let Reply { status, .. } = host
        .command("open-account", "early", json!({ "owner": "ada" }))
        .await
        .unwrap();
    assert_eq!(status, 200);
    // The head is taken when the stream is answered: the command after it is the
    // first event sent.
    let mut stream = Sse::open(&host, "", None).await.unwrap();
    let Reply { status, body, .. } = host
        .command("open-account", "late", json!({ "owner": "bob" }))
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");
    let (id, event) = stream.next_event().await.unwrap();
    assert_eq!(id, 2);
    assert_eq!(event["stream"], "account-late");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn filters_apply_on_the_host_and_ids_stay_positions() {
    let host = bank().await;
    let wanted = keep_sending(&host, "f-", 3, 4);
    let others = keep_sending(&host, "g-", 3, 4);
    let mut stream = Sse::open(
        &host,
        "?after=0&stream_prefix=account-f-&event_type=Deposited,Withdrawn",
        None,
    )
    .await
    .unwrap();
    wanted.await.unwrap().unwrap();
    others.await.unwrap().unwrap();
    let expected: Vec<Value> = host
        .read_log()
        .await
        .unwrap()
        .into_iter()
        .filter(|e| {
            e["stream"].as_str().unwrap().starts_with("account-f-") && e["type"] == "Deposited"
        })
        .collect();
    assert_eq!(expected.len(), 3 * 4);
    let mut received = Vec::new();
    for _ in 0..expected.len() {
        let (id, event) = stream.next_event().await.unwrap();
        assert_eq!(
            Some(id),
            event["position"].as_u64(),
            "the id is the position"
        );
        received.push(event);
    }
    assert_eq!(received, expected);
    // Resuming a filtered stream after its last event sends only later matches: a
    // new deposit to an f- account, none of the g- events around it.
    let last = expected.last().unwrap()["position"].as_u64().unwrap();
    for (name, id) in [("deposit", "g-0"), ("deposit", "f-1"), ("deposit", "g-1")] {
        let Reply { status, body, .. } = host
            .command(name, id, json!({ "amount": 9 }))
            .await
            .unwrap();
        assert_eq!(status, 200, "{body}");
    }
    let mut resumed = Sse::open(
        &host,
        "?stream_prefix=account-f-&event_type=Deposited",
        Some(last),
    )
    .await
    .unwrap();
    let (_, event) = resumed.next_event().await.unwrap();
    assert_eq!(event["stream"], "account-f-1");
    assert_eq!(event["data"]["amount"], 9);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_parameters_are_refused_before_the_stream_starts() {
    let host = bank().await;
    for (query, last_event_id) in [
        ("?after=abc", None),
        ("?after=-1", None),
        ("?event_type=", None),
        ("?event_type=Deposited,,Withdrawn", None),
        ("?event_type=not%20a%20type", None),
        ("?unknown=1", None),
        ("", Some("not-a-number")),
    ] {
        let mut request = host
            .client
            .get(format!("{}/events/stream{query}", host.url));
        if let Some(id) = last_event_id {
            request = request.header("last-event-id", id);
        }
        let reply = crate::common::Reply::read(request.send().await.unwrap())
            .await
            .unwrap();
        reply.assert_error(400, "bad_request");
        assert!(
            reply
                .header("content-type")
                .is_some_and(|t| t.starts_with("application/json")),
            "{query}: {:?}",
            reply.header("content-type")
        );
    }
}

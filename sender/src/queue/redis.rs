//! [`RedisQueue`]: the schedule in Redis, shared by every instance that names it.
//!
//! Keys (under a prefix, `hookbin:sender:` by default):
//! - `due`: a sorted set of the tasks not leased, scored by due time; its members are
//!   `<20-digit send sequence>:<id>`, so tasks due at the same millisecond keep their send order;
//! - `leased`: a sorted set of the leased task ids, scored by lease end;
//! - `task:<id>`: a hash (webhook, failed, trigger, due, seq, member, token, lease_until);
//! - `wh:<webhook id>`: the set of that webhook's task ids (to remove them all at once);
//! - `seq`: the send sequence.
//!
//! Every call is one Lua script, so it is atomic: two instances claiming at once never get the
//! same task, and an expired lease goes back to `due` inside the claim that finds it.

use std::collections::HashSet;
use std::time::Duration;

use redis::aio::ConnectionManager;

use super::{
    DeliveryQueue, Leased, QueueError, Task, lease_ms, new_token, trigger_from, trigger_name,
};

/// ARGV: prefix, then per task: id, webhook, failed, trigger, due (an emit's tasks at once).
const SEND: &str = r"
local p = ARGV[1]
for i = 2, #ARGV, 5 do
  local id, webhook = ARGV[i], ARGV[i + 1]
  local k = p .. 'task:' .. id
  local old = redis.call('HMGET', k, 'member', 'webhook')
  if old[1] then
    redis.call('ZREM', p .. 'due', old[1])
    redis.call('ZREM', p .. 'leased', id)
    redis.call('SREM', p .. 'wh:' .. old[2], id)
    redis.call('DEL', k)
  end
  local seq = redis.call('INCR', p .. 'seq')
  local member = string.format('%020d', seq) .. ':' .. id
  redis.call('HSET', k, 'webhook', webhook, 'failed', ARGV[i + 2], 'trigger', ARGV[i + 3],
    'due', ARGV[i + 4], 'seq', seq, 'member', member)
  redis.call('ZADD', p .. 'due', ARGV[i + 4], member)
  redis.call('SADD', p .. 'wh:' .. webhook, id)
end
return 1
";

const CLAIM: &str = r"
local p = ARGV[1]
local now, untl, max, token = tonumber(ARGV[2]), ARGV[3], tonumber(ARGV[4]), ARGV[5]
local skip = {}
for i = 6, #ARGV do skip[ARGV[i]] = true end
local due, leased = p .. 'due', p .. 'leased'
for _, id in ipairs(redis.call('ZRANGEBYSCORE', leased, '-inf', now)) do
  local k = p .. 'task:' .. id
  redis.call('ZREM', leased, id)
  local h = redis.call('HMGET', k, 'member', 'due')
  if h[1] then
    redis.call('HDEL', k, 'token', 'lease_until')
    redis.call('ZADD', due, h[2], h[1])
  end
end
local out, n, offset = {}, 0, 0
while n < max do
  local batch = redis.call('ZRANGEBYSCORE', due, '-inf', now, 'LIMIT', offset, 100)
  if #batch == 0 then break end
  for _, member in ipairs(batch) do
    if n >= max then break end
    local id = string.sub(member, 22)
    local k = p .. 'task:' .. id
    local h = redis.call('HMGET', k, 'webhook', 'failed', 'trigger', 'due')
    if skip[h[1]] then
      offset = offset + 1
    else
      n = n + 1
      local t = token .. ':' .. n
      redis.call('ZREM', due, member)
      redis.call('HSET', k, 'token', t, 'lease_until', untl)
      redis.call('ZADD', leased, untl, id)
      for _, v in ipairs({id, h[1], h[2], h[3], h[4], t}) do table.insert(out, v) end
    end
  end
end
return out
";

/// ARGV: prefix, id, token[, due, failed]. Returns 0 when the lease is not held.
const FINISH: &str = r"
local p, id, token = ARGV[1], ARGV[2], ARGV[3]
local k = p .. 'task:' .. id
if redis.call('HGET', k, 'token') ~= token then return 0 end
redis.call('ZREM', p .. 'leased', id)
if ARGV[4] then
  local member = redis.call('HGET', k, 'member')
  redis.call('HSET', k, 'due', ARGV[4], 'failed', ARGV[5])
  redis.call('HDEL', k, 'token', 'lease_until')
  redis.call('ZADD', p .. 'due', ARGV[4], member)
else
  local webhook = redis.call('HGET', k, 'webhook')
  redis.call('SREM', p .. 'wh:' .. webhook, id)
  redis.call('DEL', k)
end
return 1
";

/// ARGV: prefix, id, now. 1 when the task is claimable now, 0 when leased or not queued.
const DUE_NOW: &str = r"
local p, id, now = ARGV[1], ARGV[2], tonumber(ARGV[3])
local k = p .. 'task:' .. id
local h = redis.call('HMGET', k, 'member', 'due', 'lease_until')
if not h[1] then return 0 end
if h[3] then
  if tonumber(h[3]) > now then return 0 end
  return 1
end
if tonumber(h[2]) > now then
  redis.call('HSET', k, 'due', now)
  redis.call('ZADD', p .. 'due', now, h[1])
end
return 1
";

const REMOVE_WEBHOOK: &str = r"
local p = ARGV[1]
local set = p .. 'wh:' .. ARGV[2]
local ids = redis.call('SMEMBERS', set)
for _, id in ipairs(ids) do
  local k = p .. 'task:' .. id
  local member = redis.call('HGET', k, 'member')
  if member then redis.call('ZREM', p .. 'due', member) end
  redis.call('ZREM', p .. 'leased', id)
  redis.call('DEL', k)
end
redis.call('DEL', set)
return ids
";

const NEXT_DUE: &str = r"
local p = ARGV[1]
local a = redis.call('ZRANGE', p .. 'due', 0, 0, 'WITHSCORES')
local b = redis.call('ZRANGE', p .. 'leased', 0, 0, 'WITHSCORES')
return {a[2] or '', b[2] or ''}
";

const TASKS: &str = r"
local p = ARGV[1]
local out = {}
local function add(id)
  local h = redis.call('HMGET', p .. 'task:' .. id, 'webhook', 'failed', 'trigger', 'due', 'seq')
  if h[1] then
    for _, v in ipairs({id, h[1], h[2], h[3], h[4], h[5]}) do table.insert(out, v) end
  end
end
for _, member in ipairs(redis.call('ZRANGE', p .. 'due', 0, -1)) do add(string.sub(member, 22)) end
for _, id in ipairs(redis.call('ZRANGE', p .. 'leased', 0, -1)) do add(id) end
return out
";

/// The Redis [`DeliveryQueue`] (see the module documentation for its keys).
#[derive(Clone)]
pub struct RedisQueue {
    conn: ConnectionManager,
    prefix: String,
    scripts: std::sync::Arc<Scripts>,
}

struct Scripts {
    send: redis::Script,
    claim: redis::Script,
    finish: redis::Script,
    due_now: redis::Script,
    remove_webhook: redis::Script,
    next_due: redis::Script,
    tasks: redis::Script,
}

impl std::fmt::Debug for RedisQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisQueue")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

fn unavailable(e: impl std::fmt::Display) -> QueueError {
    QueueError::Unavailable(e.to_string())
}

fn parse<T: std::str::FromStr>(text: &str) -> Result<T, QueueError> {
    text.parse()
        .map_err(|_| unavailable(format!("unexpected value {text:?} in the queue")))
}

impl RedisQueue {
    /// Connects to `url` (`redis://HOST:PORT[/DB]`); keys go under `prefix`.
    pub async fn connect(url: &str, prefix: &str) -> Result<Self, QueueError> {
        let client = redis::Client::open(url).map_err(unavailable)?;
        // Every call bounded: with Redis down the dispatcher's calls fail (and are retried on
        // its next turn) instead of hanging.
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(Duration::from_secs(3)))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        let conn = tokio::time::timeout(
            Duration::from_secs(5),
            ConnectionManager::new_with_config(client, config),
        )
        .await
        .map_err(|_| unavailable("no answer within the deadline"))?
        .map_err(unavailable)?;
        Ok(Self {
            conn,
            prefix: prefix.to_owned(),
            scripts: std::sync::Arc::new(Scripts {
                send: redis::Script::new(SEND),
                claim: redis::Script::new(CLAIM),
                finish: redis::Script::new(FINISH),
                due_now: redis::Script::new(DUE_NOW),
                remove_webhook: redis::Script::new(REMOVE_WEBHOOK),
                next_due: redis::Script::new(NEXT_DUE),
                tasks: redis::Script::new(TASKS),
            }),
        })
    }

    async fn finish(&self, leased: &Leased, retry: Option<(i64, u32)>) -> Result<(), QueueError> {
        let mut conn = self.conn.clone();
        let mut call = self.scripts.finish.prepare_invoke();
        call.arg(&self.prefix)
            .arg(&leased.task.id)
            .arg(&leased.token);
        if let Some((due, failed)) = retry {
            call.arg(due).arg(failed);
        }
        let held: i64 = call.invoke_async(&mut conn).await.map_err(unavailable)?;
        if held == 1 {
            Ok(())
        } else {
            Err(QueueError::LeaseLost(leased.task.id.clone()))
        }
    }
}

#[async_trait::async_trait]
impl DeliveryQueue for RedisQueue {
    async fn send(&self, task: Task, due_ms: i64) -> Result<(), QueueError> {
        self.send_many(vec![(task, due_ms)]).await
    }

    async fn send_many(&self, tasks: Vec<(Task, i64)>) -> Result<(), QueueError> {
        if tasks.is_empty() {
            return Ok(());
        }
        let mut conn = self.conn.clone();
        let mut call = self.scripts.send.prepare_invoke();
        call.arg(&self.prefix);
        for (task, due_ms) in &tasks {
            call.arg(&task.id)
                .arg(&task.webhook_id)
                .arg(task.failed)
                .arg(trigger_name(task.trigger))
                .arg(due_ms);
        }
        let _: i64 = call.invoke_async(&mut conn).await.map_err(unavailable)?;
        Ok(())
    }

    async fn claim(
        &self,
        now_ms: i64,
        lease: Duration,
        max: usize,
        skip: &HashSet<String>,
    ) -> Result<Vec<Leased>, QueueError> {
        if max == 0 {
            return Ok(Vec::new());
        }
        let until = now_ms.saturating_add(lease_ms(lease));
        let mut conn = self.conn.clone();
        let mut call = self.scripts.claim.prepare_invoke();
        call.arg(&self.prefix)
            .arg(now_ms)
            .arg(until)
            .arg(max)
            .arg(new_token());
        for webhook in skip {
            call.arg(webhook);
        }
        let flat: Vec<String> = call.invoke_async(&mut conn).await.map_err(unavailable)?;
        flat.chunks_exact(6)
            .map(|c| {
                Ok(Leased {
                    task: Task {
                        id: c[0].clone(),
                        webhook_id: c[1].clone(),
                        failed: parse(&c[2])?,
                        trigger: trigger_from(&c[3]),
                    },
                    due_ms: parse(&c[4])?,
                    token: c[5].clone(),
                    lease_until_ms: until,
                })
            })
            .collect()
    }

    async fn ack(&self, leased: &Leased) -> Result<(), QueueError> {
        self.finish(leased, None).await
    }

    async fn retry(&self, leased: &Leased, due_ms: i64, failed: u32) -> Result<(), QueueError> {
        self.finish(leased, Some((due_ms, failed))).await
    }

    async fn due_now(&self, id: &str, now_ms: i64) -> Result<bool, QueueError> {
        let mut conn = self.conn.clone();
        let claimable: i64 = self
            .scripts
            .due_now
            .prepare_invoke()
            .arg(&self.prefix)
            .arg(id)
            .arg(now_ms)
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(claimable == 1)
    }

    async fn remove_webhook(&self, webhook_id: &str) -> Result<Vec<String>, QueueError> {
        let mut conn = self.conn.clone();
        self.scripts
            .remove_webhook
            .prepare_invoke()
            .arg(&self.prefix)
            .arg(webhook_id)
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)
    }

    async fn next_due(&self) -> Result<Option<i64>, QueueError> {
        let mut conn = self.conn.clone();
        let pair: Vec<String> = self
            .scripts
            .next_due
            .prepare_invoke()
            .arg(&self.prefix)
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)?;
        let mut next: Option<i64> = None;
        for score in pair.iter().filter(|s| !s.is_empty()) {
            // Scores come back as Redis prints doubles; due times are whole milliseconds.
            let ms = parse::<f64>(score)? as i64;
            next = Some(next.map_or(ms, |n| n.min(ms)));
        }
        Ok(next)
    }

    async fn tasks(&self) -> Result<Vec<(Task, i64)>, QueueError> {
        let mut conn = self.conn.clone();
        let flat: Vec<String> = self
            .scripts
            .tasks
            .prepare_invoke()
            .arg(&self.prefix)
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)?;
        let mut all = flat
            .chunks_exact(6)
            .map(|c| {
                Ok((
                    parse::<i64>(&c[4])?,
                    parse::<u64>(&c[5])?,
                    Task {
                        id: c[0].clone(),
                        webhook_id: c[1].clone(),
                        failed: parse(&c[2])?,
                        trigger: trigger_from(&c[3]),
                    },
                ))
            })
            .collect::<Result<Vec<_>, QueueError>>()?;
        all.sort_by_key(|(due, seq, _)| (*due, *seq));
        Ok(all.into_iter().map(|(due, _, t)| (t, due)).collect())
    }
}

/// A `redis-server` of the tests' own, on a free loopback port, stopped when dropped.
#[cfg(test)]
pub(crate) struct TestRedis {
    child: std::process::Child,
    pub url: String,
}

#[cfg(test)]
impl TestRedis {
    pub async fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = std::process::Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("redis-server is installed (Debian's redis-server)");
        let url = format!("redis://127.0.0.1:{port}/");
        let client = redis::Client::open(url.as_str()).unwrap();
        let ready = async {
            loop {
                if let Ok(mut c) = client.get_multiplexed_async_connection().await
                    && redis::cmd("PING")
                        .query_async::<String>(&mut c)
                        .await
                        .is_ok()
                {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(10), ready)
            .await
            .expect("redis-server answered within 10 s");
        Self { child, url }
    }
}

#[cfg(test)]
impl Drop for TestRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    crate::queue::conformance::suite!(async {
        let server = TestRedis::start().await;
        let queue = RedisQueue::connect(&server.url, "hookbin:test:")
            .await
            .unwrap();
        crate::queue::conformance::Fixture::with_guard(queue, server)
    });

    #[tokio::test]
    async fn two_instances_share_one_queue() {
        let server = TestRedis::start().await;
        let a = RedisQueue::connect(&server.url, "hookbin:test:")
            .await
            .unwrap();
        let b = RedisQueue::connect(&server.url, "hookbin:test:")
            .await
            .unwrap();
        let task = Task {
            id: "msg_1".into(),
            webhook_id: "wh_a".into(),
            failed: 0,
            trigger: api::AttemptTrigger::Scheduled,
        };
        a.send(task.clone(), 1_000).await.unwrap();
        let lease = Duration::from_secs(30);
        let got = b.claim(1_000, lease, 10, &HashSet::new()).await.unwrap();
        assert_eq!(got[0].task, task);
        // Instance b "dies"; after the lease a gets it.
        assert!(
            a.claim(2_000, lease, 10, &HashSet::new())
                .await
                .unwrap()
                .is_empty()
        );
        let again = a.claim(31_000, lease, 10, &HashSet::new()).await.unwrap();
        assert_eq!(again[0].task, task);
        assert!(matches!(
            b.ack(&got[0]).await,
            Err(QueueError::LeaseLost(_))
        ));
        a.ack(&again[0]).await.unwrap();
        assert!(b.tasks().await.unwrap().is_empty());
    }
}

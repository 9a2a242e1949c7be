//! Database parser throughput (MySQL, PostgreSQL, Redis, Memcached, MongoDB): realistic
//! conversations of 500 request/response pairs each through the L7 engine in 1460-byte
//! segments. One criterion group per protocol, reporting MB/s.
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use deepflow_core::Direction;
use deepflow_core::Direction::{ClientToServer as C, ServerToClient as S};

#[path = "l7_common.rs"]
mod l7_common;
use l7_common::*;

const N: usize = 500;

type Conv = Vec<(Direction, Vec<u8>)>;

// ---------------------------------------------------------------------------------------------
// MySQL

fn my_pkt(seq: u8, p: &[u8]) -> Vec<u8> {
    let mut v = (p.len() as u32).to_le_bytes()[..3].to_vec();
    v.push(seq);
    v.extend_from_slice(p);
    v
}

fn mysql() -> Conv {
    let mut v = Vec::new();
    for i in 0..N {
        let mut q = vec![3u8];
        if i % 2 == 0 {
            q.extend(
                format!("SELECT id, name, price FROM items WHERE category = 'tools' AND id > {i} LIMIT 10").bytes(),
            );
            v.push((C, my_pkt(0, &q)));
            let mut r = my_pkt(1, &[3]);
            for (s, name) in ["id", "name", "price"].iter().enumerate() {
                let mut def = b"\x03def\x04shop\x05items\x05items".to_vec();
                def.push(name.len() as u8);
                def.extend_from_slice(name.as_bytes());
                def.push(name.len() as u8);
                def.extend_from_slice(name.as_bytes());
                def.extend_from_slice(b"\x0c\x21\x00\xff\x00\x00\x00\xfd\x00\x00\x00\x00\x00");
                r.extend(my_pkt(2 + s as u8, &def));
            }
            r.extend(my_pkt(5, b"\xfe\x00\x00\x02\x00"));
            for row in 0..10u8 {
                let mut p = Vec::new();
                for val in [format!("{}", i * 10 + row as usize), format!("item-{row}-hammer"), "19.99".to_string()] {
                    p.push(val.len() as u8);
                    p.extend(val.bytes());
                }
                r.extend(my_pkt(6 + row, &p));
            }
            r.extend(my_pkt(16, b"\xfe\x00\x00\x02\x00"));
            v.push((S, r));
        } else {
            q.extend(format!("UPDATE items SET stock = stock - 1 WHERE id = {i}").bytes());
            v.push((C, my_pkt(0, &q)));
            v.push((S, my_pkt(1, b"\x00\x01\x00\x02\x00\x00\x00")));
        }
    }
    v
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL

fn pg_msg(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut v = vec![tag];
    v.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
    v.extend_from_slice(body);
    v
}

fn postgresql() -> Conv {
    let mut v = Vec::new();
    for i in 0..N {
        let sql = format!("SELECT id, name, price FROM items WHERE id > {i} ORDER BY id LIMIT 10\0");
        v.push((C, pg_msg(b'Q', sql.as_bytes())));
        let mut r = pg_msg(b'T', b"\x00\x03id\0\x00\x00\x40\x01\x00\x01\x00\x00\x00\x17\x00\x04\xff\xff\xff\xff\x00\x00name\0\x00\x00\x40\x01\x00\x02\x00\x00\x00\x19\xff\xff\xff\xff\xff\xff\x00\x00price\0\x00\x00\x40\x01\x00\x03\x00\x00\x06\xa4\xff\xff\x00\x06\x00\x06\x00\x00");
        for row in 0..10 {
            let mut b = vec![0, 3];
            for val in [format!("{}", i + row), format!("item-{row}-hammer"), "19.99".to_string()] {
                b.extend_from_slice(&(val.len() as u32).to_be_bytes());
                b.extend(val.bytes());
            }
            r.extend(pg_msg(b'D', &b));
        }
        r.extend(pg_msg(b'C', b"SELECT 10\0"));
        r.extend(pg_msg(b'Z', b"I"));
        v.push((S, r));
    }
    v
}

// ---------------------------------------------------------------------------------------------
// Redis

fn resp_cmd(args: &[&str]) -> Vec<u8> {
    let mut v = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        v.extend(format!("${}\r\n{a}\r\n", a.len()).into_bytes());
    }
    v
}

fn redis() -> Conv {
    let mut v = Vec::new();
    // pipelined batches of 10 commands
    for b in 0..N / 10 {
        let mut req = Vec::new();
        let mut resp = Vec::new();
        for i in 0..10 {
            let key = format!("session:{b}:{i}");
            if i % 2 == 0 {
                req.extend(resp_cmd(&["SET", &key, "{\"user\":42,\"cart\":[1,2,3],\"ttl\":3600}", "EX", "3600"]));
                resp.extend_from_slice(b"+OK\r\n");
            } else {
                req.extend(resp_cmd(&["HGETALL", &key]));
                resp.extend_from_slice(b"*4\r\n$4\r\nuser\r\n$2\r\n42\r\n$4\r\ncart\r\n$7\r\n[1,2,3]\r\n");
            }
        }
        v.push((C, req));
        v.push((S, resp));
    }
    v
}

// ---------------------------------------------------------------------------------------------
// Memcached

fn memcached() -> Conv {
    let mut v = Vec::new();
    let value = "x".repeat(200);
    for i in 0..N {
        if i % 2 == 0 {
            v.push((C, format!("set user:{i} 0 3600 {}\r\n{value}\r\n", value.len()).into_bytes()));
            v.push((S, b"STORED\r\n".to_vec()));
        } else {
            v.push((C, format!("get user:{} user:{i}\r\n", i - 1).into_bytes()));
            v.push((S, format!("VALUE user:{} 0 {}\r\n{value}\r\nEND\r\n", i - 1, value.len()).into_bytes()));
        }
    }
    v
}

// ---------------------------------------------------------------------------------------------
// MongoDB

fn bson_str(k: &str, s: &str) -> Vec<u8> {
    let mut v = vec![2];
    v.extend(k.bytes());
    v.push(0);
    v.extend(((s.len() + 1) as u32).to_le_bytes());
    v.extend(s.bytes());
    v.push(0);
    v
}

fn bson_int(k: &str, i: i32) -> Vec<u8> {
    let mut v = vec![0x10];
    v.extend(k.bytes());
    v.push(0);
    v.extend(i.to_le_bytes());
    v
}

fn bson_doc(elems: &[Vec<u8>]) -> Vec<u8> {
    let body: Vec<u8> = elems.concat();
    let mut v = ((body.len() + 5) as u32).to_le_bytes().to_vec();
    v.extend(body);
    v.push(0);
    v
}

fn op_msg(id: u32, to: u32, doc: &[u8]) -> Vec<u8> {
    let len = 16 + 4 + 1 + doc.len();
    let mut v = (len as u32).to_le_bytes().to_vec();
    v.extend(id.to_le_bytes());
    v.extend(to.to_le_bytes());
    v.extend(2013u32.to_le_bytes());
    v.extend(0u32.to_le_bytes());
    v.push(0);
    v.extend_from_slice(doc);
    v
}

fn mongodb() -> Conv {
    let mut v = Vec::new();
    for i in 0..N as u32 {
        let mut filter = vec![3];
        filter.extend(b"filter\0");
        filter.extend(bson_doc(&[bson_str("status", "active"), bson_int("age", 30)]));
        let find = bson_doc(&[bson_str("find", "users"), filter, bson_int("limit", 10), bson_str("$db", "shop")]);
        v.push((C, op_msg(i + 1, 0, &find)));
        let docs: Vec<Vec<u8>> = (0..10)
            .map(|k| {
                let mut d = vec![3];
                d.extend(format!("{k}\0").bytes());
                d.extend(bson_doc(&[
                    bson_str("name", "someone"),
                    bson_int("age", 31 + k),
                    bson_str("status", "active"),
                ]));
                d
            })
            .collect();
        let mut batch = vec![4];
        batch.extend(b"firstBatch\0");
        batch.extend(bson_doc(&docs));
        let mut cursor = vec![3];
        cursor.extend(b"cursor\0");
        cursor.extend(bson_doc(&[batch, bson_str("ns", "shop.users")]));
        let reply = bson_doc(&[cursor, bson_int("ok", 1)]);
        v.push((S, op_msg(10_000 + i, i + 1, &reply)));
    }
    v
}

// ---------------------------------------------------------------------------------------------

fn bench(c: &mut Criterion) {
    let cases: [(&str, u16, Conv, usize); 5] = [
        ("l7_mysql", 3306, mysql(), N),
        ("l7_postgresql", 5432, postgresql(), N),
        ("l7_redis", 6379, redis(), N),
        ("l7_memcached", 11211, memcached(), N),
        ("l7_mongodb", 27017, mongodb(), N),
    ];
    for (name, port, conv, rows) in cases {
        let bytes: usize = conv.iter().map(|(_, b)| b.len()).sum();
        let f = flow(6, port);
        let mut e = engine();
        assert_eq!(feed(&mut e, &f, &conv, 1460), rows, "{name}");
        let mut g = c.benchmark_group(name);
        g.throughput(Throughput::Bytes(bytes as u64));
        g.bench_function("bytes", |b| b.iter(|| feed(&mut e, &f, &conv, 1460)));
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);

//! The migrations on both databases: a file from before versions, a newer schema, a role that
//! may not create tables.

use super::*;
use crate::jobs::store::Store;
use crate::jobs::store::testing::{databases, sqlite};

#[test]
fn a_data_dir_from_before_versions_is_migrated_its_paths_made_relative_and_its_readers_found() {
    let database = sqlite();
    let crate::config::DatabaseUrl::Sqlite(path) = &database.url else { unreachable!() };
    let job = "0b7c2a61-3f7e-4c3b-9a55-2f2d1f1b6c11";
    let upload = "5d8e6c1a-0000-4000-8000-000000000001";
    {
        // The file as an older kiln left it: no schema_version, JSON only.
        let conn = rusqlite::Connection::open(path).unwrap();
        conn.execute_batch(sqlite::V1).unwrap();
        let spec = format!(r#"{{"data":{{"dataset":"uploaded","dataset_id":"{upload}"}}}}"#);
        conn.execute(
            "INSERT INTO jobs (id, status, spec, parameters, epochs, created_at) VALUES (?1, 'queued', ?2, 1, 1, '')",
            [job, spec.as_str()],
        )
        .unwrap();
        for dir in [
            format!("/srv/old/data/jobs/{job}/checkpoints/step-0000000004"),
            format!("jobs/{job}/checkpoints/step-0000000008"),
        ] {
            conn.execute(
                "INSERT INTO checkpoints (job_id, epoch, step, bytes, sha256, dir, created_at) VALUES (?1, 1, 4, 1, '', ?2, '')",
                [job, dir.as_str()],
            )
            .unwrap();
        }
    }
    let store = database.open();
    let read = |sql: &str| -> Vec<String> {
        let rows = store.read(|db| db.query(sql, &[])).unwrap();
        rows.iter().map(|r| r.get::<String>(0).unwrap()).collect()
    };
    assert_eq!(
        read("SELECT dir FROM checkpoints ORDER BY id"),
        [
            format!("jobs/{job}/checkpoints/step-0000000004"),
            format!("jobs/{job}/checkpoints/step-0000000008")
        ]
    );
    assert_eq!(read("SELECT dataset_id FROM jobs"), [upload], "the upload a job reads, from its JSON");
    assert_eq!(read("SELECT CAST(version AS TEXT) FROM schema_version"), [VERSION.to_string()]);
}

#[test]
fn a_schema_newer_than_this_kiln_is_refused_and_the_current_one_reopens() {
    for database in databases() {
        let store = database.open();
        drop(store);
        let store = database.open();
        store.read(|db| db.execute("UPDATE schema_version SET version = version + 1", &[])).unwrap();
        drop(store);
        match Store::open(&database.url) {
            Err(StoreError::SchemaTooNew { found, known }) => {
                assert_eq!((found, known), (VERSION + 1, VERSION), "{}", database.name)
            }
            Err(e) => panic!("{}: {e}", database.name),
            Ok(_) => panic!("{}: a newer schema was opened", database.name),
        }
    }
}

#[test]
fn a_current_postgresql_database_opens_for_a_role_that_may_not_create_tables() {
    let database = crate::jobs::store::testing::postgres();
    drop(database.open());
    let crate::config::DatabaseUrl::Postgres(url) = &database.url else { unreachable!() };
    let role = format!("kiln_rows_{}", uuid::Uuid::new_v4().simple());
    let mut owner = ::postgres::Client::connect(url, ::postgres::NoTls).unwrap();
    owner
        .batch_execute(&format!(
            "CREATE ROLE {role} LOGIN; REVOKE CREATE ON SCHEMA public FROM PUBLIC;
             GRANT USAGE ON SCHEMA public TO {role};
             GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {role};
             GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO {role};"
        ))
        .unwrap();
    let as_role = crate::config::DatabaseUrl::Postgres(url.replacen("kiln@", &format!("{role}@"), 1));
    let opened = Store::open(&as_role).map(|store| store.replicas().map(|r| r.len()));
    let created =
        ::postgres::Client::connect(&url.replacen("kiln@", &format!("{role}@"), 1), ::postgres::NoTls)
            .unwrap()
            .batch_execute("CREATE TABLE t (x INT)");
    owner
        .batch_execute(&format!("DROP OWNED BY {role}; DROP ROLE {role}"))
        .unwrap_or_else(|e| eprintln!("{e}"));
    assert!(created.is_err(), "the role may not create tables");
    assert_eq!(opened.unwrap().unwrap(), 0, "and still opens and reads the current database");
}

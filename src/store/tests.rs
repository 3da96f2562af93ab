use super::*;

fn def(family: &str, revision: u32) -> StoredDefinition {
    StoredDefinition {
        family: family.into(),
        revision,
        active: true,
        json: "{}".into(),
    }
}

#[test]
fn definitions_survive_reopening() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = Store::open(dir.path()).unwrap();
        assert_eq!(s.next_revision("web").unwrap(), 1);
        s.insert_definition(&def("web", 1)).unwrap();
        s.insert_definition(&def("web", 2)).unwrap();
        s.deactivate_definition("web", 1).unwrap();
    }
    let s = Store::open(dir.path()).unwrap();
    assert_eq!(s.next_revision("web").unwrap(), 3);
    let all = s.definitions().unwrap();
    assert_eq!(all.len(), 2);
    assert!(!all[0].active && all[1].active);
}

#[test]
fn duplicate_revision_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path()).unwrap();
    s.insert_definition(&def("web", 1)).unwrap();
    assert!(s.insert_definition(&def("web", 1)).is_err());
}

#[test]
fn newer_schema_is_refused_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    drop(Store::open(dir.path()).unwrap());
    let path = dir.path().join("berth.db");
    Connection::open(&path)
        .unwrap()
        .pragma_update(None, "user_version", 99)
        .unwrap();
    let err = Store::open(dir.path()).unwrap_err().to_string();
    assert!(
        err.contains(&format!(
            "schema version 99, newer than this berthd knows ({})",
            migrations::LATEST
        )),
        "{err}"
    );
    let v: i64 = Connection::open(&path)
        .unwrap()
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap();
    assert_eq!(v, 99);
}

#[test]
fn a_file_that_is_not_a_database_is_refused_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("berth.db");
    let garbage =
        b"this is not an SQLite database, it is a text file left here by mistake\n".repeat(20);
    std::fs::write(&path, &garbage).unwrap();
    let err = Store::open(dir.path()).unwrap_err().to_string();
    assert!(err.contains("is not a berth state database"), "{err}");
    assert!(err.contains("move it away"), "{err}");
    assert_eq!(std::fs::read(&path).unwrap(), garbage);
}

#[test]
fn facts_about_the_last_run_survive_reopening() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = Store::open(dir.path()).unwrap();
        assert_eq!(s.meta("boot_id").unwrap(), None);
        s.set_meta("boot_id", "a").unwrap();
        s.set_meta("boot_id", "b").unwrap();
    }
    let s = Store::open(dir.path()).unwrap();
    assert_eq!(s.meta("boot_id").unwrap().as_deref(), Some("b"));
}

#[test]
fn services_are_replaced_whole_survive_reopening_and_are_deleted() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = Store::open(dir.path()).unwrap();
        s.put_service("web", r#"{"v":1}"#).unwrap();
        s.put_service("web", r#"{"v":2}"#).unwrap();
        s.put_service("api", r#"{"v":1}"#).unwrap();
        s.delete_service("api").unwrap();
    }
    let s = Store::open(dir.path()).unwrap();
    assert_eq!(
        s.services().unwrap(),
        [("web".to_string(), r#"{"v":2}"#.to_string())]
    );
}

#[test]
fn a_full_database_says_so_and_keeps_what_it_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path()).unwrap();
    s.put_task("kept", "{}").unwrap();
    // SQLite's own ceiling stands in for a full disk: the same SQLITE_FULL comes back.
    let pages: i64 = s
        .conn
        .pragma_query_value(None, "page_count", |r| r.get(0))
        .unwrap();
    s.conn
        .pragma_update(None, "max_page_count", pages + 2)
        .unwrap();
    let big = "x".repeat(64 * 1024);
    let err = (0..100)
        .find_map(|i| s.put_task(&format!("t{i}"), &big).err())
        .expect("the database never filled");
    assert!(matches!(err, StoreError::Full { .. }), "{err:?}");
    assert!(
        err.to_string()
            .contains("the disk is full; nothing recorded before was lost"),
        "{err}"
    );
    assert!(s.tasks().unwrap().iter().any(|(id, _)| id == "kept"));
    s.delete_task("kept").unwrap();
    assert!(!s.tasks().unwrap().iter().any(|(id, _)| id == "kept"));
}

#[test]
fn the_state_directory_reports_its_free_space() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path()).unwrap();
    assert_eq!(s.dir(), dir.path());
    assert!(s.free_bytes().is_some_and(|b| b > 0));
}

#[test]
fn tags_survive_reopening_replace_by_key_and_go_with_their_task() {
    let dir = tempfile::tempdir().unwrap();
    let tag = |k: &str, v: &str| Tag {
        key: k.into(),
        value: v.into(),
    };
    let task = Tagged::Task("abc".into());
    {
        let s = Store::open(dir.path()).unwrap();
        s.put_task("abc", "{}").unwrap();
        s.put_tags(&task, &[tag("team", "a"), tag("env", "prod")])
            .unwrap();
        s.put_tags(&task, &[tag("team", "b")]).unwrap();
        s.put_tags(&Tagged::Service("abc".into()), &[tag("x", "1")])
            .unwrap();
    }
    let s = Store::open(dir.path()).unwrap();
    assert_eq!(
        s.tags(&task).unwrap(),
        vec![tag("env", "prod"), tag("team", "b")]
    );
    s.remove_tags(&task, &["env".into(), "nosuch".into()])
        .unwrap();
    assert_eq!(s.tags(&task).unwrap(), vec![tag("team", "b")]);
    s.delete_task("abc").unwrap();
    assert!(s.tags(&task).unwrap().is_empty());
    // A service of the same name keeps its own.
    assert_eq!(
        s.tags(&Tagged::Service("abc".into())).unwrap(),
        vec![tag("x", "1")]
    );
}

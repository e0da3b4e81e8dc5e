//! `fake-openemr`: the fake OpenEMR of `mmt_testkit::openemr` as a process, with a small
//! chart, for the browser test and manual trials of the EHR push.
//!
//! Environment: `PORT` (default 8091), `OPENEMR_VERSION` (`7` or `8`, default 7),
//! `OPENEMR_CLIENT_ID` (default `mmt-client`), `OPENEMR_REFRESH_TOKEN` (the refresh token it
//! issued to MMT, default `fake-refresh-token`), `OPENEMR_BROWSER_USER` (who is signed in to
//! OpenEMR in the browser that meets `/oauth2/{site}/authorize`, default `dr-lee`).
//! `GET /__fake/notes` shows the notes written.

use std::net::SocketAddr;

use mmt_testkit::openemr::{FakeEncounter, FakeOpenEmr, FakePatient, OpenEmrVersion};

fn patient(
    uuid: &str,
    pid: u64,
    name: (&str, &str),
    dob: &str,
    encounters: Vec<FakeEncounter>,
) -> FakePatient {
    FakePatient {
        uuid: uuid.into(),
        pid,
        fname: name.0.into(),
        lname: name.1.into(),
        dob: dob.into(),
        pubpid: format!("MRN-{pid:04}"),
        encounters,
    }
}

fn encounter(uuid: &str, eid: u64, date: &str, reason: &str) -> FakeEncounter {
    FakeEncounter {
        uuid: uuid.into(),
        eid,
        date: date.into(),
        reason: reason.into(),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt().with_target(false).init();
    let env = |key: &str, default: &str| std::env::var(key).unwrap_or_else(|_| default.into());
    let port: u16 = env("PORT", "8091").parse()?;
    let version = match env("OPENEMR_VERSION", "7").as_str() {
        "8" => OpenEmrVersion::V8,
        _ => OpenEmrVersion::V7,
    };
    let emr = FakeOpenEmr::start_on(
        SocketAddr::from(([127, 0, 0, 1], port)),
        version,
        &env("OPENEMR_CLIENT_ID", "mmt-client"),
        &env("OPENEMR_REFRESH_TOKEN", "fake-refresh-token"),
    )
    .await?;
    emr.add(patient(
        "946da619-c631-431a-a282-487cd6fb7802",
        1042,
        ("Valentina", "Ortega"),
        "1984-03-02",
        vec![
            encounter(
                "946da61d-0001-4f8e-abe5-534a25913b71",
                40,
                "2026-10-02 09:15:00",
                "Migraine",
            ),
            encounter(
                "946da61d-0002-4f8e-abe5-534a25913b71",
                45,
                "2026-12-05 14:30:00",
                "Follow-up headache",
            ),
        ],
    ));
    emr.add(patient(
        "946da619-0000-431a-a282-487cd6fb7803",
        2077,
        ("Maria", "Ortiz"),
        "1990-07-21",
        vec![encounter(
            "946da61d-0003-4f8e-abe5-534a25913b71",
            46,
            "2026-12-01 11:00:00",
            "Asthma review",
        )],
    ));
    emr.add(patient(
        "946da619-1111-431a-a282-487cd6fb7804",
        3001,
        ("John", "Smith"),
        "1955-01-30",
        Vec::new(),
    ));
    emr.sign_in_as(&env("OPENEMR_BROWSER_USER", "dr-lee"));
    tracing::info!(base_url = %emr.base_url(), ?version, "fake OpenEMR listening");
    tokio::signal::ctrl_c().await?;
    Ok(())
}

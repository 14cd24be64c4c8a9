//! The local CRM: contacts and their activities in the frontdesk database,
//! unique on the normalised phone number.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{CallLog, Contact, ContactInput, Crm, CrmError, Direction, Meeting, Task, E164};
use crate::clock::Clock;
use crate::pii::Pii;
use crate::store::{ContactRecord, NewContact, Store};

/// CRM kept in the store.
#[derive(Debug, Clone)]
pub struct LocalCrm {
    store: Store,
    clock: Arc<dyn Clock>,
}

impl LocalCrm {
    /// Use `store`; `clock` stamps the rows.
    pub fn new(store: Store, clock: Arc<dyn Clock>) -> LocalCrm {
        LocalCrm { store, clock }
    }

    async fn activity(
        &self,
        contact_id: &str,
        kind: &str,
        subject: Option<&str>,
        body: Option<&str>,
        at: DateTime<Utc>,
        end: Option<DateTime<Utc>>,
    ) -> Result<String, CrmError> {
        self.store
            .add_activity(contact_id, kind, subject, body, at, end, self.clock.now())
            .await?
            .ok_or(CrmError::ContactNotFound)
    }
}

fn to_contact(r: ContactRecord, phone: &E164) -> Contact {
    Contact {
        id: r.id,
        phone: phone.clone(),
        name: r.name,
        email: r.email,
    }
}

#[async_trait]
impl Crm for LocalCrm {
    async fn lookup_by_phone(&self, phone: &E164) -> Result<Option<Contact>, CrmError> {
        Ok(self
            .store
            .contact_by_phone(phone.as_str())
            .await?
            .map(|r| to_contact(r, phone)))
    }

    async fn upsert(&self, c: &ContactInput) -> Result<Contact, CrmError> {
        let rec = self
            .store
            .upsert_contact(
                &NewContact {
                    phone_e164: c.phone.to_pii(),
                    name: c.name.clone(),
                    email: c.email.clone(),
                    timezone: c.timezone.clone(),
                },
                self.clock.now(),
            )
            .await?;
        Ok(to_contact(rec, &c.phone))
    }

    async fn add_note(
        &self,
        contact_id: &str,
        body: &Pii<String>,
        at: DateTime<Utc>,
    ) -> Result<String, CrmError> {
        self.activity(contact_id, "note", None, Some(body.expose()), at, None)
            .await
    }

    async fn add_task(&self, contact_id: &str, task: &Task) -> Result<String, CrmError> {
        let body = task.body.as_ref().map(|b| b.expose().as_str());
        self.activity(
            contact_id,
            "task",
            Some(&task.subject),
            body,
            task.due,
            None,
        )
        .await
    }

    async fn log_call(&self, contact_id: &str, call: &CallLog) -> Result<String, CrmError> {
        let dir = match call.direction {
            Direction::Inbound => "inbound",
            Direction::Outbound => "outbound",
        };
        let subject = format!("{} ({dir}, {})", call.title, call.status);
        let end = call.started
            + chrono::Duration::from_std(call.duration).unwrap_or(chrono::Duration::zero());
        let body = call.body.as_ref().map(|b| b.expose().as_str());
        self.activity(
            contact_id,
            "call",
            Some(&subject),
            body,
            call.started,
            Some(end),
        )
        .await
    }

    async fn add_meeting(&self, contact_id: &str, m: &Meeting) -> Result<String, CrmError> {
        let body = m.body.as_ref().map(|b| b.expose().as_str());
        self.activity(
            contact_id,
            "meeting",
            Some(&m.title),
            body,
            m.start,
            Some(m.end),
        )
        .await
    }
}

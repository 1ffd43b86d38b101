//! The services Slipway offers and their plans, with the limits Slipway enforces.

use serde::Serialize;
use sha2::{Digest, Sha256};

const MB: u64 = 1024 * 1024;
const GB: u64 = 1024 * MB;

/// What a plan allows; each is enforced by Slipway (Postgres and Redis settings, and the
/// server's cgroup).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct PlanLimits {
    /// Connections (Postgres) or clients (Redis) at once.
    pub connections: u32,
    /// Disk a database may use.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub storage_bytes: Option<u64>,
    /// Rows a database may hold before INSERT is revoked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rows: Option<u64>,
    /// Memory the server's processes may use, enforced outside the server (cgroup).
    pub memory_bytes: u64,
    /// Redis's own `maxmemory`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub maxmemory_bytes: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Without the service: `essential-0`.
    pub name: String,
    pub human_name: String,
    pub default: bool,
    pub limits: PlanLimits,
}

/// Which built-in provider runs a service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Postgres,
    Redis,
    /// A third party's, over Heroku's add-on partner API.
    Partner,
}

#[derive(Debug, Clone)]
pub struct Service {
    pub name: String,
    pub human_name: String,
    /// Other names users type (`postgresql`).
    pub aliases: Vec<String>,
    /// Attachment name of the first one on an app (`DATABASE`).
    pub default_attachment: String,
    /// Prefix of the colored attachment names (`HEROKU_POSTGRESQL` → `HEROKU_POSTGRESQL_ONYX`).
    pub attachment_prefix: String,
    /// Add-on names are `<name_prefix>-<adjective>-<number>`.
    pub name_prefix: String,
    pub kind: Kind,
    pub plans: Vec<Plan>,
    /// How a partner's provider is reached (partner services only).
    pub partner: Option<crate::partner::PartnerApi>,
}

impl Service {
    pub fn id(&self) -> String {
        stable_id(&self.name)
    }

    pub fn default_plan(&self) -> &Plan {
        self.plans
            .iter()
            .find(|p| p.default)
            .unwrap_or(&self.plans[0])
    }

    pub fn plan(&self, name: &str) -> Option<&Plan> {
        let name = name.trim().to_ascii_lowercase();
        let name = match name.as_str() {
            // Heroku's older names for the smallest Postgres plans.
            "mini" | "hobby-dev" if self.kind == Kind::Postgres => "essential-0",
            "basic" | "hobby-basic" if self.kind == Kind::Postgres => "essential-1",
            "hobby-dev" if self.kind == Kind::Redis => "mini",
            n => n,
        };
        self.plans.iter().find(|p| p.name == name)
    }

    /// Whether `name` names this service (its name, an alias or its id).
    pub fn is(&self, name: &str) -> bool {
        let name = name.trim().to_ascii_lowercase();
        self.name == name || self.aliases.contains(&name) || self.id() == name
    }

    /// `heroku-postgresql:essential-0`.
    pub fn plan_full_name(&self, plan: &Plan) -> String {
        format!("{}:{}", self.name, plan.name)
    }

    pub fn plan_id(&self, plan: &Plan) -> String {
        stable_id(&self.plan_full_name(plan))
    }
}

/// An id that stays the same across runs and machines (services and plans are not stored).
fn stable_id(name: &str) -> String {
    let digest = Sha256::digest(format!("slipway:{name}").as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_random_bytes(bytes)
        .into_uuid()
        .to_string()
}

fn pg(name: &str, human: &str, conns: u32, storage: u64, rows: Option<u64>, mem: u64) -> Plan {
    Plan {
        name: name.into(),
        human_name: human.into(),
        default: name == "essential-0",
        limits: PlanLimits {
            connections: conns,
            storage_bytes: Some(storage),
            rows,
            memory_bytes: mem,
            maxmemory_bytes: None,
        },
    }
}

fn redis(name: &str, human: &str, maxmemory: u64, clients: u32) -> Plan {
    Plan {
        name: name.into(),
        human_name: human.into(),
        default: name == "mini",
        limits: PlanLimits {
            connections: clients,
            storage_bytes: None,
            rows: None,
            // Lua scripts and the allocator's overhead take Redis past maxmemory; the cap
            // outside Redis leaves room for a full, healthy instance (its RSS is about 1.5x).
            memory_bytes: 2 * maxmemory + 32 * MB,
            maxmemory_bytes: Some(maxmemory),
        },
    }
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// Every service Slipway offers.
#[derive(Debug, Clone)]
pub struct Catalogue {
    services: Vec<Service>,
}

impl Default for Catalogue {
    fn default() -> Self {
        Catalogue {
            services: vec![
                Service {
                    name: "heroku-postgresql".into(),
                    human_name: "Heroku Postgres".into(),
                    aliases: strings(&["postgresql", "postgres", "heroku-postgres"]),
                    default_attachment: "DATABASE".into(),
                    attachment_prefix: "HEROKU_POSTGRESQL".into(),
                    name_prefix: "postgresql".into(),
                    kind: Kind::Postgres,
                    partner: None,
                    plans: vec![
                        pg("essential-0", "Essential 0", 20, GB, Some(10_000), 256 * MB),
                        pg(
                            "essential-1",
                            "Essential 1",
                            20,
                            10 * GB,
                            Some(10_000_000),
                            512 * MB,
                        ),
                        pg("essential-2", "Essential 2", 40, 32 * GB, None, GB),
                        pg("standard-0", "Standard 0", 120, 64 * GB, None, 4 * GB),
                        pg("standard-2", "Standard 2", 400, 256 * GB, None, 8 * GB),
                        pg("standard-4", "Standard 4", 500, 768 * GB, None, 30 * GB),
                    ],
                },
                Service {
                    name: "heroku-redis".into(),
                    human_name: "Heroku Key-Value Store".into(),
                    aliases: strings(&["redis", "heroku-key-value-store"]),
                    default_attachment: "REDIS".into(),
                    attachment_prefix: "HEROKU_REDIS".into(),
                    name_prefix: "redis".into(),
                    kind: Kind::Redis,
                    partner: None,
                    plans: vec![
                        redis("mini", "Mini", 25 * MB, 20),
                        redis("premium-0", "Premium 0", 50 * MB, 40),
                        redis("premium-1", "Premium 1", 100 * MB, 80),
                        redis("premium-2", "Premium 2", 250 * MB, 200),
                        redis("premium-3", "Premium 3", 500 * MB, 400),
                        redis("premium-4", "Premium 4", 750 * MB, 700),
                        redis("premium-5", "Premium 5", GB, 1000),
                    ],
                },
            ],
        }
    }
}

impl Catalogue {
    pub fn services(&self) -> &[Service] {
        &self.services
    }

    /// A service by name, alias or id.
    pub fn service(&self, name: &str) -> Option<&Service> {
        self.services.iter().find(|s| s.is(name))
    }

    /// Adds a partner's service (from its manifest); refused if its name is taken.
    pub fn add(&mut self, service: Service) -> Result<(), String> {
        if self.services.iter().any(|s| s.is(&service.name)) {
            return Err(format!("the service name {} is taken", service.name));
        }
        self.services.push(service);
        Ok(())
    }

    /// `SERVICE[:PLAN]` → the service and plan (the default plan without one).
    pub fn resolve(&self, spec: &str) -> Result<(&Service, &Plan), String> {
        let (svc, plan) = match spec.split_once(':') {
            Some((s, p)) => (s, Some(p)),
            None => (spec, None),
        };
        let service = self.service(svc).ok_or_else(|| {
            let names: Vec<&str> = self.services.iter().map(|s| s.name.as_str()).collect();
            format!(
                "Couldn't find either the add-on service or the add-on plan of \"{spec}\". \
                 Services: {}. See slipway addons:services.",
                names.join(", ")
            )
        })?;
        let plan = match plan {
            None => service.default_plan(),
            Some(p) => service.plan(p).ok_or_else(|| {
                let names: Vec<&str> = service.plans.iter().map(|p| p.name.as_str()).collect();
                format!(
                    "Couldn't find the plan \"{p}\" of {}. Plans: {}. See slipway addons:plans {}.",
                    service.name,
                    names.join(", "),
                    service.name
                )
            })?,
        };
        Ok((service, plan))
    }

    /// A plan by its id or full name.
    pub fn plan_by_id(&self, id: &str) -> Option<(&Service, &Plan)> {
        self.services.iter().find_map(|s| {
            s.plans
                .iter()
                .find(|p| s.plan_id(p) == id || s.plan_full_name(p) == id)
                .map(|p| (s, p))
        })
    }
}

/// Colors of attachment names (`HEROKU_POSTGRESQL_ONYX`), Heroku's list.
pub const COLORS: &[&str] = &[
    "AMBER", "AQUA", "BLACK", "BLUE", "BRONZE", "BROWN", "CHARCOAL", "COBALT", "COPPER", "CRIMSON",
    "CYAN", "GOLD", "GRAY", "GREEN", "IVORY", "JADE", "LIME", "MAGENTA", "MAROON", "MAUVE", "NAVY",
    "OLIVE", "ONYX", "ORANGE", "PINK", "PUCE", "PURPLE", "RED", "ROSE", "SILVER", "TEAL", "TOPAZ",
    "VIOLET", "WHITE", "YELLOW",
];

/// A `<PREFIX>_<COLOR>` name not in `taken`, starting from a random color.
pub fn colored_name(prefix: &str, taken: &[String]) -> String {
    let start = rand::random::<usize>() % COLORS.len();
    for i in 0..COLORS.len() {
        let name = format!("{prefix}_{}", COLORS[(start + i) % COLORS.len()]);
        if !taken.contains(&name) {
            return name;
        }
    }
    format!(
        "{prefix}_{}",
        hex::encode(rand::random::<[u8; 3]>()).to_uppercase()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn services_resolve_by_name_alias_and_plan() {
        let c = Catalogue::default();
        let (s, p) = c.resolve("postgresql").unwrap();
        assert_eq!(
            (s.name.as_str(), p.name.as_str()),
            ("heroku-postgresql", "essential-0")
        );
        let (s, p) = c.resolve("heroku-redis:premium-0").unwrap();
        assert_eq!(
            (s.name.as_str(), p.name.as_str()),
            ("heroku-redis", "premium-0")
        );
        assert_eq!(c.resolve("redis").unwrap().1.name, "mini");
        assert_eq!(
            c.resolve("heroku-postgresql:mini").unwrap().1.name,
            "essential-0"
        );
        let e = c.resolve("redis:huge").unwrap_err();
        assert!(
            e.contains("premium-0") && e.contains("addons:plans heroku-redis"),
            "{e}"
        );
        assert!(c.resolve("mysql").unwrap_err().contains("addons:services"));
        // Ids are stable and distinct.
        let (s, p) = c.resolve("redis:mini").unwrap();
        assert_eq!(s.id(), c.service("heroku-redis").unwrap().id());
        assert_eq!(c.plan_by_id(&s.plan_id(p)).unwrap().1.name, "mini");
        assert_ne!(s.id(), c.service("postgresql").unwrap().id());
    }

    #[test]
    fn redis_caps_leave_room_above_maxmemory() {
        let c = Catalogue::default();
        let mini = c.resolve("redis:mini").unwrap().1.limits;
        assert_eq!(mini.maxmemory_bytes, Some(25 * MB));
        assert_eq!(mini.memory_bytes, 82 * MB);
        assert_eq!(mini.connections, 20);
    }

    #[test]
    fn colored_names_skip_taken_ones() {
        let taken: Vec<String> = COLORS[1..]
            .iter()
            .map(|c| format!("HEROKU_REDIS_{c}"))
            .collect();
        assert_eq!(colored_name("HEROKU_REDIS", &taken), "HEROKU_REDIS_AMBER");
    }
}

import os

from freshet.kit.service import serve
from freshet.kit.settings import Settings
from freshet.refresher.app import create_app

settings = Settings()
# Test-only crash points (see RefreshLimits.failpoint); never set in a deployment.
serve(
    create_app(settings, failpoint=os.environ.get("FRESHET_TEST_REFRESH_FAILPOINT", "")), settings
)

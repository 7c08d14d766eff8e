from freshet.collector.app import create_app
from freshet.kit.service import serve
from freshet.kit.settings import Settings

settings = Settings()
serve(create_app(settings), settings)
